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
* While busy, work whose amount is known reports how far it is (:meth:`_Worker.report_progress`):
  ``progress`` in [0, 1] draws a determinate bar in the status line, -1 (unknown) the spinner.

Inside a running kernel, results computed on a worker thread are applied on the kernel's main
thread (through its asyncio loop), so comm messages and observers stay on one thread.

Views built inside :meth:`Scheduler.attach` (the Explorer's) share one :class:`Scheduler`
instead of a thread per lane: one prioritised queue, so the work the user looks at (the current
layer's first picture, then its UMAP, deviation column and metrics) runs first and does not
compete for the cores with work on other layers. Newest-wins per lane still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import pathlib
import queue
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from geowidgets.widgets._export import ViewExport

if TYPE_CHECKING:
    from geowidgets.session import Session

__all__ = [
    "PROGRESS_UNKNOWN",
    "STATIC",
    "Lane",
    "Scheduler",
    "Task",
    "ViewBase",
    "StatusBar",
    "check_keywords",
    "progress_fraction",
]

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


def release_file_watchers(widget: Any) -> None:
    """Disconnect ``widget`` from the class-level file watchers anywidget gives file-based ``_esm``/``_css``.

    anywidget (0.9-0.11) turns a class's ``_esm = path`` into a ``FileContents`` whose ``changed``
    signal every instance connects to with a strong reference to itself (for hot reload), so a
    view is never garbage collected, even after ``close()``. Views call this when closed.
    """
    try:
        from anywidget._file_contents import FileContents
    except ImportError:  # pragma: no cover - another anywidget layout: nothing to release
        return
    for klass in type(widget).__mro__:
        for key in ("_esm", "_css"):
            contents = vars(klass).get(key)
            if not isinstance(contents, FileContents):
                continue
            for slot in list(getattr(contents.changed, "_slots", ())):
                try:
                    fn = slot.dereference()
                except Exception:  # noqa: BLE001 - a dead or foreign slot
                    continue
                cells = getattr(fn, "__closure__", None) or ()
                if any(_cell_holds(cell, widget) for cell in cells):
                    contents.changed.disconnect(fn)


def _cell_holds(cell: Any, obj: Any) -> bool:
    try:
        return cell.cell_contents is obj
    except ValueError:  # empty cell
        return False


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
        scheduler = self.owner._scheduler
        new_thread: threading.Thread | None = None
        with self._lock:
            self._generation += 1
            generation = self._generation
            run_now = inline and not self._busy
            if not run_now:
                self._pending = (generation, compute, apply)
                self._busy = True
                self._idle.clear()
                if scheduler is None and self._thread is None:
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
        if scheduler is not None:
            scheduler.enqueue(self)
        elif new_thread is not None:
            new_thread.start()

    def cancel(self) -> None:
        """Drop the waiting request and make a running one stale (its result is never applied)."""
        with self._lock:
            self._generation += 1
            self._pending = None

    @property
    def has_pending(self) -> bool:
        """True while a request waits to run."""
        return self._pending is not None

    def _take(self) -> tuple | None:
        """The waiting request (and it is no longer waiting), or None: then the lane is idle."""
        with self._lock:
            job = self._pending
            self._pending = None
            if job is None:
                self._thread = None
                self._busy = False
            return job

    def _execute(self, job: tuple) -> None:
        generation, compute, apply = job
        try:
            result = compute()
        except Exception as exc:  # noqa: BLE001 - shown in the widget
            if generation == self._generation:
                self.owner._deliver(functools.partial(self._fail, exc))
            return
        if generation == self._generation:
            self.owner._deliver(functools.partial(self._apply, generation, apply, result))

    def _finish(self) -> None:
        # Refresh the status before signalling idle, so wait() never returns while "busy" shows.
        self.owner._deliver(lambda: self.owner._refresh_status())
        with self._lock:
            if not self._busy:  # a request submitted meanwhile keeps the lane busy
                self._idle.set()

    def _work(self) -> None:
        while (job := self._take()) is not None:
            self._execute(job)
        self._finish()

    def run_step(self) -> None:
        """Run the waiting request, if any (a :class:`Scheduler` worker calls this); idle when none is left."""
        job = self._take()
        if job is not None:
            self._execute(job)
            with self._lock:
                if self._pending is not None:
                    return  # a newer request waits; the scheduler keeps this lane queued
                self._busy = False
                self._thread = None
        self._finish()

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


_CURRENT_SCHEDULER: contextvars.ContextVar[Scheduler | None] = contextvars.ContextVar(
    "geowidgets_scheduler", default=None
)


class Task:
    """Shared work queued on a :class:`Scheduler` that belongs to no view (e.g. one layer's kNN graph).

    Parameters
    ----------
    key : hashable
        Identity of the work; a scheduler queues one task per key.
    fn : callable
        Does the work (its result is not kept: it fills a cache, such as the session's memo).
    layer : str, optional
        The layer the work is for (the scheduler's policy ranks it by it).
    stage : str
        What the work is (e.g. ``"graph"``, ``"tables"``), also used for ranking and progress.

    Attributes
    ----------
    done : bool
        True once ``fn`` has run (successfully or not).
    error : str or None
        ``"Type: message"`` of the exception ``fn`` raised, if any.
    """

    def __init__(self, key: Any, fn: Callable[[], Any], *, layer: str | None = None, stage: str = ""):
        self.key = key
        self.fn: Callable[[], Any] | None = fn
        self.layer = layer
        self.stage = stage
        self.done = False
        self.error: str | None = None

    @property
    def has_pending(self) -> bool:
        """True until the task has run."""
        return not self.done

    def run_step(self) -> None:
        """Run ``fn`` once (errors are kept in :attr:`error`; the views that need the result report them)."""
        fn, self.fn = self.fn, None
        try:
            if fn is not None:
                fn()
        except Exception as exc:  # noqa: BLE001 - the view asking for the same result shows it
            self.error = _error_text(exc)
        finally:
            self.done = True

    def __repr__(self) -> str:
        return f"Task({self.stage!r}, layer={self.layer!r}, done={self.done})"


class Scheduler:
    """One prioritised queue for the work of several views and shared tasks, run by one worker thread.

    Views built inside :meth:`attach` submit their lanes' requests here instead of to a thread of
    their own. A worker always runs the queued item of lowest rank, ``policy(item)`` evaluated
    when it picks (so a change of what the user looks at reorders the queue at once); equal
    ranks run in the order they were queued. Each lane keeps its newest-wins rule: a lane is
    queued once, runs its newest request, and a stale result is never applied. Requests whose
    rank is below ``urgent_rank`` (e.g. a new layer's first picture) may run on a second worker
    while the first is busy with a long job, so they never wait for it.

    Worker threads start when work is queued and end when the queue is empty, so an idle
    scheduler holds no thread (and keeps nothing alive).

    Parameters
    ----------
    policy : callable, optional
        ``policy(item) -> tuple`` for a :class:`Lane` or :class:`Task`: smaller runs first.
        Default: first queued, first run.
    urgent_rank : tuple, optional
        Items ranked below it may use the second worker; None: one worker only.

    Attributes
    ----------
    history : list of (str, str or None)
        ``(what, layer)`` of every item that ran, in completion order: ``what`` is
        ``"ViewClass.lane"`` for a view's request or the task's stage.
    listeners : list of callable
        Called as ``listener(item)`` on the worker thread after each item ran.

    Examples
    --------
    >>> order = []
    >>> sched = Scheduler(policy=lambda item: (0 if item.layer == "b" else 1,))
    >>> with sched.hold():
    ...     for layer in "abc":
    ...         _ = sched.add_task(layer, lambda layer=layer: order.append(layer), layer=layer, stage="graph")
    >>> sched.wait(10), order[0]
    (True, 'b')
    """

    def __init__(
        self,
        policy: Callable[[Any], tuple] | None = None,
        *,
        urgent_rank: tuple | None = None,
        name: str = "geowidgets",
    ):
        self.policy = policy
        self.urgent_rank = urgent_rank
        self.name = name
        self.history: list[tuple[str, str | None]] = []
        self.listeners: list[Callable[[Any], None]] = []
        self._cv = threading.Condition()
        self._queued: dict[Any, int] = {}
        self._running: set[Any] = set()
        self._tasks: dict[Any, Task] = {}
        self._seq = itertools.count()
        self._main: threading.Thread | None = None
        self._urgent: threading.Thread | None = None
        self._held = 0
        self._closed = False

    @contextlib.contextmanager
    def attach(self) -> Iterator[Scheduler]:
        """Views (and lanes) created inside this block use this scheduler."""
        token = _CURRENT_SCHEDULER.set(self)
        try:
            yield self
        finally:
            _CURRENT_SCHEDULER.reset(token)

    @contextlib.contextmanager
    def hold(self) -> Iterator[Scheduler]:
        """Queue without starting anything inside this block (so the first pick sees every item)."""
        self.pause()
        try:
            yield self
        finally:
            self.resume()

    def pause(self) -> None:
        """Start nothing new until the matching :meth:`resume` (running items finish)."""
        with self._cv:
            self._held += 1

    def resume(self) -> None:
        """Undo one :meth:`pause`; the queue runs again once every pause is undone."""
        with self._cv:
            self._held = max(0, self._held - 1)
            self._kick()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def enqueue(self, item: Lane | Task) -> None:
        """Queue a lane with a waiting request, or a task (queued at most once at a time)."""
        with self._cv:
            if not self._closed:
                if item not in self._queued:
                    self._queued[item] = next(self._seq)
                self._kick()
                return
        if isinstance(item, Lane):  # closed: drop the request so the lane turns idle
            item.cancel()
            item.run_step()

    def add_task(self, key: Any, fn: Callable[[], Any], *, layer: str | None = None, stage: str = "") -> Task:
        """Queue shared work once per ``key`` (a key seen before returns its task, done or not)."""
        with self._cv:
            task = self._tasks.get(key)
            if task is None:
                task = self._tasks[key] = Task(key, fn, layer=layer, stage=stage)
                if not self._closed:
                    self._queued[task] = next(self._seq)
                    self._kick()
            return task

    def tasks(self, stage: str | None = None) -> list[Task]:
        """The tasks added so far (of one ``stage``, if given)."""
        with self._cv:
            return [t for t in self._tasks.values() if stage is None or t.stage == stage]

    def describe(self, item: Lane | Task) -> tuple[str, str | None]:
        """``(what, layer)`` of a queued item, as recorded in :attr:`history`."""
        if isinstance(item, Task):
            return item.stage, item.layer
        return f"{type(item.owner).__name__}.{item.name}", getattr(item.owner, "layer", None)

    def rank(self, item: Lane | Task) -> tuple:
        """``policy(item)`` (``()`` without a policy or when it fails)."""
        if self.policy is None:
            return ()
        try:
            return tuple(self.policy(item))
        except Exception:  # noqa: BLE001 - a policy error must not stop the queue
            return ()

    def _urgent_item(self, item: Any) -> bool:
        return self.urgent_rank is not None and self.rank(item) < self.urgent_rank

    def _pick(self, urgent: bool) -> Any:
        best, best_key = None, None
        for item, seq in self._queued.items():
            if item in self._running or (urgent and not self._urgent_item(item)):
                continue
            key = (self.rank(item), seq)
            if best_key is None or key < best_key:
                best, best_key = item, key
        return best

    def _kick(self) -> None:
        """Start the workers the queue needs (call with the lock held)."""
        if self._held or self._closed or not self._queued:
            return
        if self._main is None:
            self._main = threading.Thread(target=self._work, args=(False,), name=f"{self.name}-worker", daemon=False)
            self._main.start()
        elif self._urgent is None and self.urgent_rank is not None and self._pick(True) is not None:
            self._urgent = threading.Thread(target=self._work, args=(True,), name=f"{self.name}-urgent", daemon=False)
            self._urgent.start()

    def _work(self, urgent: bool) -> None:
        while True:
            with self._cv:
                item = None if (self._closed or self._held) else self._pick(urgent)
                if item is None:
                    if urgent:
                        self._urgent = None
                    else:
                        self._main = None
                    self._cv.notify_all()
                    return
                del self._queued[item]
                self._running.add(item)
                what = self.describe(item)
            ran = item.has_pending
            try:
                item.run_step()
            finally:
                with self._cv:
                    self._running.discard(item)
                    if item.has_pending and not self._closed and item not in self._queued:
                        self._queued[item] = next(self._seq)
                    if ran:
                        self.history.append(what)
                    self._kick()
                    self._cv.notify_all()
            for listener in list(self.listeners):
                try:
                    listener(item)
                except Exception:  # noqa: BLE001 - a progress display must not stop the queue
                    pass

    @property
    def busy(self) -> bool:
        """True while anything is queued or running."""
        with self._cv:
            return bool(self._queued or self._running)

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until nothing is queued or running; True if so, False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._running and (self._closed or not self._queued), timeout)

    def close(self, timeout: float | None = 60.0) -> bool:
        """Drop the queue, make running requests stale, and wait for the workers to end.

        Returns True if every worker thread has ended within ``timeout`` seconds.
        """
        with self._cv:
            self._closed = True
            items = [*self._queued, *self._running]
            self._queued.clear()
            threads = [t for t in (self._main, self._urgent) if t is not None]
            self._cv.notify_all()
        for item in items:
            if isinstance(item, Lane):
                item.cancel()
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join(timeout)
        for item in items:  # lanes whose request was dropped turn idle
            if isinstance(item, Lane) and item.busy and item not in self._running:
                item.run_step()
        self.listeners.clear()
        self.policy = None
        return not any(t.is_alive() for t in threads)

    def __repr__(self) -> str:
        with self._cv:
            return f"Scheduler(queued={len(self._queued)}, running={len(self._running)}, closed={self._closed})"


#: ``progress`` while the amount of work is not known: the status line shows a spinner.
PROGRESS_UNKNOWN = -1.0

_PROGRESS_HELP = (
    "Fraction (float) of the running work done, in [0, 1], while busy and the amount of work is known "
    "(drawn as a determinate bar in the status line); -1 when unknown or not busy (a spinner while busy)."
)


def progress_fraction(done: float, total: float | None) -> float:
    """``done / total`` clipped to [0, 1], or ``PROGRESS_UNKNOWN`` (-1) when ``total`` is unknown or not positive.

    Examples
    --------
    >>> progress_fraction(12_800, 100_000), progress_fraction(3, None), progress_fraction(5, 4)
    (0.128, -1.0, 1.0)
    """
    if total is None or not total > 0:
        return PROGRESS_UNKNOWN
    return min(max(float(done) / float(total), 0.0), 1.0)


class _Worker(traitlets.HasTraits):
    """Mixin: lanes plus delivery of results to the thread that owns the traits.

    The class it is mixed into provides ``revision``, ``status`` and ``message`` traits and
    ``hold_sync`` (an ipywidgets widget). ``progress`` is declared here, so every view has it;
    a view with a ``status_bar`` (:class:`StatusBar`) has it mirrored there.
    """

    progress = traitlets.Float(PROGRESS_UNKNOWN, help=_PROGRESS_HELP)

    if TYPE_CHECKING:
        revision: int
        status: str
        message: str

        def hold_sync(self) -> AbstractContextManager[Any]: ...

    @property
    def _live(self) -> Session:
        """The view's session; only the live code paths call this (a static view has none)."""
        session = getattr(self, "session", None)
        if session is None:
            raise RuntimeError(f"this {type(self).__name__} shows a fixed result and has no session to compute with")
        return session

    def _init_worker(self) -> None:
        self._scheduler: Scheduler | None = _CURRENT_SCHEDULER.get()
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
        # Through the kernel's loop only while it runs: a loop left registered but stopped (e.g. after a
        # notebook was executed in this process) would hold every result forever.
        loop = self._loop
        if loop is not None and not loop.is_closed() and loop.is_running():
            self._deliveries.put(fn)
            loop.call_soon_threadsafe(self._drain)
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
        """busy while any lane works; else error while any lane's last request failed; else idle.

        A new request's ``message`` (or the end of the work) sets ``progress`` back to unknown.
        """
        lanes = list(self._lanes.values())
        errors = [lane.error for lane in lanes if lane.error]
        with self.hold_sync():
            if any(lane.busy for lane in lanes):
                if message is not None or self.status != "busy":
                    self.message = message if message is not None else "working…"
                    self.progress = PROGRESS_UNKNOWN
                self.status = "busy"
            elif errors:
                self.message = errors[0]
                self.progress = PROGRESS_UNKNOWN
                self.status = "error"
            else:
                self.message = ""
                self.progress = PROGRESS_UNKNOWN
                self.status = "idle"

    def show_progress(self, done: float, total: float | None, message: str | None = None) -> None:
        """Show ``done`` of ``total`` units of the running work (and ``message``), on the thread that owns the traits.

        Only while the view is busy (a late report after the work ended is ignored). ``total``
        None (or not positive) shows the spinner: the amount of work is unknown.
        """
        if self.status != "busy":
            return
        with self.hold_sync():
            if message is not None:
                self.message = message
            self.progress = progress_fraction(done, total)

    def report_progress(self, done: float, total: float | None, message: str | None = None) -> None:
        """:meth:`show_progress` from any thread (e.g. a worker's callback): delivered like a result."""
        self._deliver(functools.partial(self.show_progress, done, total, message))

    @contextlib.contextmanager
    def following_capture(self, session: Any, message: Callable[[int, int], str] | None = None) -> Iterator[None]:
        """Inside this block, the session's capture reports its progress to this view (``report_progress``).

        For work that waits for :meth:`Session.activations` (whoever runs the capture): each
        captured batch calls ``message(done, total)`` for the status text and moves the bar (the
        spinner again once every sample is captured); a capture already under way is shown at
        once. Listens through ``session.capture_listeners``.
        """
        listeners = getattr(session, "capture_listeners", None)
        if listeners is None:  # a static view's stand-in, or a session without capture reports
            yield
            return

        def listener(done: int, total: int | None) -> None:
            text = None if message is None or total is None else message(done, total)
            # Once every sample is captured, what follows (e.g. the layout) is of unknown length: a spinner.
            self.report_progress(done, None if total is None or done >= total else total, text)

        listeners.append(listener)
        try:
            state = getattr(session, "capture_progress", None)
            if state is not None:
                listener(*state)
            yield
        finally:
            with contextlib.suppress(ValueError):
                listeners.remove(listener)

    @traitlets.observe("progress")
    def _mirror_progress(self, change: dict) -> None:
        bar = getattr(self, "status_bar", None)
        if isinstance(bar, StatusBar):
            bar.progress = change["new"]


class ViewBase(_Worker, ViewExport, anywidget.AnyWidget):
    """Base of the anywidget views: ``revision``, ``status``, ``message`` and worker lanes.

    Attributes
    ----------
    revision : int
        Bumped each time a result has been set; the browser marks ``data-gw-drawn`` with the
        revision it drew.
    status : {"idle", "busy", "error"}
    message : str
        Progress or error text, shown in the widget's ``.gw-status`` element.
    progress : float
        Fraction of the running work done (a determinate bar), or -1 when unknown (a spinner).
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
    progress = traitlets.Float(PROGRESS_UNKNOWN, help=_PROGRESS_HELP).tag(sync=True)
    neighbour_of = traitlets.Int(
        -1, help="Sample (int) whose neighbours are highlighted (the hovered or clicked one), -1 if none."
    ).tag(sync=True)
    neighbours = traitlets.List(
        traitlets.Int(),
        default_value=[],
        help="Indices (list of int) of the k nearest neighbours of neighbour_of in the current layer's space, "
        "nearest first; drawn as a highlight.",
    ).tag(sync=True)
    neighbour_distances = traitlets.List(
        traitlets.Float(),
        default_value=[],
        help="Distances (list of float, the session's metric) of the neighbours, in the order of neighbours.",
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
        session = getattr(self, "session", None)
        k_trait = self.class_traits().get("k")
        if session is not None and k_trait is not None and "k" not in kwargs:
            # The default k (10) of a session whose k_max is smaller (few samples, or k_max=5): its largest k.
            kwargs["k"] = min(int(k_trait.default_value), int(session.k_max))
        self.last_traceback = ""
        self._init_worker()
        super().__init__(**kwargs)

    def close(self) -> None:
        """Close the widget and release what keeps it alive (its lanes' waiting requests, file watchers)."""
        for lane in list(self._lanes.values()):
            lane.cancel()
        release_file_watchers(self)
        super().close()

    @classmethod
    def keyword_traits(cls) -> list[str]:
        """The traits a constructor accepts as keywords: the view's own settable traits, plus ``layout``."""
        own = set()
        for klass in cls.__mro__:
            if isinstance(klass, type) and issubclass(klass, ViewBase):
                own |= {name for name, value in vars(klass).items() if isinstance(value, traitlets.TraitType)}
        traits = cls.class_traits()
        skip = {"revision", "status", "message", "progress"}
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
    progress = traitlets.Float(PROGRESS_UNKNOWN, help=_PROGRESS_HELP).tag(sync=True)
    summary = traitlets.Unicode("", help="One-line summary (str) shown left of the status, e.g. N, layer, k.").tag(
        sync=True
    )
    needs_bokeh = traitlets.Bool(
        False, help="Whether the view needs BokehJS on the page (bool); if missing, the status line says so."
    ).tag(sync=True)

    def close(self) -> None:
        """Close the status line and release anywidget's file watcher reference to it."""
        release_file_watchers(self)
        super().close()
