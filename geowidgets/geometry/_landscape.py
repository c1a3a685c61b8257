"""The loss landscape around trained weights: linear mode connectivity and the Hessian spectrum.

* :func:`interpolate` / :func:`loss_barrier`: the loss and accuracy along the straight line
  ``θ(α) = (1 − α)·θ_a + α·θ_b`` between two models of one architecture, and the barrier
  ``max_α [L(θ(α)) − ((1 − α)·L(θ_a) + α·L(θ_b))]``. Frankle, Dziugaite, Roy & Carbin 2020,
  "Linear Mode Connectivity and the Lottery Ticket Hypothesis" (ICML): two solutions are
  linearly connected when the barrier is about zero.
* :func:`hessian_eigenvalues`: the top eigenvalues of the loss Hessian with respect to the
  parameters, by Lanczos iteration (ARPACK's ``eigsh`` through a SciPy ``LinearOperator``) on
  Hessian-vector products (double backward, Pearlmutter 1994); Sagun, Evci, Güney, Dauphin &
  Bottou 2018, "Empirical Analysis of the Hessian of Over-Parametrized Neural Networks".
* :func:`hessian_trace`: Hutchinson's estimator ``tr H ≈ (1/m) Σ vᵀHv`` with Rademacher ``v``
  (Hutchinson 1990; as in PyHessian, Yao et al. 2020).
* :func:`hessian_spectral_density`: the Hessian's eigenvalue density by stochastic Lanczos
  quadrature (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019): a bulk near zero and a
  few outliers, about one per class.
* :func:`loss_surface`: the loss on the plane ``θ + α·d1 + β·d2`` spanned by the top two Hessian
  eigenvectors or by filter-normalised random directions (Li, Xu, Taylor, Studer & Goldstein
  2018, "Visualizing the Loss Landscape of Neural Nets").

Formulas, defaults, cost and validation: docs/probes.md#linear-interpolation-and-loss-barrier,
docs/probes.md#hessian-eigenvalues, docs/probes.md#hessian-trace,
docs/probes.md#hessian-spectral-density and docs/probes.md#loss-surface.

The Hessian is that of the mean loss over all given samples (batches are weighted by their size;
``loss_fn`` must average over its batch), in evaluation mode (dropout off, BatchNorm uses its
running statistics).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geowidgets.probe._capture import (
    _call_model,
    _model_float_dtype,
    _n_samples,
    _to_device,
    iterate_batches,
    model_device,
)
from geowidgets.probe._layers import module_mode, select_output

__all__ = [
    "interpolate",
    "loss_barrier",
    "LossBarrier",
    "hessian_eigenvalues",
    "hessian_trace",
    "HessianTrace",
    "hessian_spectral_density",
    "HessianDensity",
    "loss_surface",
    "LossSurface",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---- batches -----------------------------------------------------------------------------------------------------
def _label_tensor(labels: Any) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        t = labels.detach()
    else:
        arr = np.asarray(labels)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"labels must be numeric (class indices or targets), got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim == 0:
        raise ValueError("labels must hold one entry per sample along dim 0, got a 0-d value")
    return t


def _batches(
    model: nn.Module, inputs: Any, labels: Any, batch_size: int
) -> Iterator[tuple[int, Any, torch.Tensor, int]]:
    """Yield ``(n_b, batch, labels_b, N)`` on the model's device; the labels follow the batches' order.

    ``N`` is the number of labels; after the last batch, the inputs must have supplied exactly N samples.
    """
    y = _label_tensor(labels)
    n_total = int(y.shape[0])
    device, dtype = model_device(model), _model_float_dtype(model)
    batches, _, n_inputs = iterate_batches(inputs, batch_size)
    if n_inputs is not None and n_inputs != n_total:
        raise ValueError(f"inputs hold {n_inputs} samples but labels hold {n_total}")
    seen = 0
    for batch in batches:
        n_b = _n_samples(batch, "a batch")
        if seen + n_b > n_total:
            raise ValueError(f"inputs hold more samples than the {n_total} labels")
        y_b = y[seen : seen + n_b].to(device)
        if y_b.is_floating_point():
            y_b = y_b.to(dtype)
        yield n_b, _to_device(batch, device, dtype), y_b, n_total
        seen += n_b
    if seen != n_total:
        raise ValueError(f"inputs hold {seen} samples but labels hold {n_total}")


def _logits(model: nn.Module, batch: Any) -> torch.Tensor:
    out = select_output(_call_model(model, batch), 0)
    if out is None:
        raise ValueError("the model's output holds no tensor; loss_fn needs the model's output (e.g. logits)")
    return out


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


# ---- interpolation -----------------------------------------------------------------------------------------------
def _check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    if type(model_a) is not type(model_b):
        raise ValueError(
            f"model_a and model_b must be the same architecture, got {type(model_a).__name__} and "
            f"{type(model_b).__name__}"
        )
    for kind, named in (("parameter", nn.Module.named_parameters), ("buffer", nn.Module.named_buffers)):
        items_a, items_b = list(named(model_a)), list(named(model_b))
        for (na, ta), (nb, tb) in zip(items_a, items_b):
            if na != nb:
                raise ValueError(f"architectures differ at {kind} {na!r}: model_b has {nb!r} in its place")
            if ta.shape != tb.shape:
                raise ValueError(
                    f"architectures differ at {kind} {na!r}: shape {tuple(ta.shape)} in model_a, "
                    f"{tuple(tb.shape)} in model_b"
                )
        if len(items_a) != len(items_b):
            longer, name = ("model_a", items_a) if len(items_a) > len(items_b) else ("model_b", items_b)
            first = name[min(len(items_a), len(items_b))][0]
            raise ValueError(f"architectures differ at {kind} {first!r}: only {longer} has it")


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(float(alpha)):
        raise ValueError(f"alpha must be a finite real number, got {alpha!r}")
    return float(alpha)


def _bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def _recompute_bn(model: nn.Module, inputs: Any, batch_size: int) -> None:
    """Fresh BatchNorm running statistics from ``inputs`` (as ``torch.optim.swa_utils.update_bn``).

    Each BatchNorm layer's statistics are reset and re-estimated as the equal-weight average over
    batches of the batch mean and unbiased batch variance (``momentum=None``), in training mode.
    """
    bns = _bn_modules(model)
    if not bns:
        return
    momenta = {m: m.momentum for m in bns}
    device, dtype = model_device(model), _model_float_dtype(model)
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        with module_mode(model, training=True):
            batches, _, _ = iterate_batches(inputs, batch_size)
            for batch in batches:
                _call_model(model, _to_device(batch, device, dtype))
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    alpha: float,
    *,
    bn_inputs: Any = None,
    batch_size: int = 256,
) -> nn.Module:
    """A new model with the weights ``(1 − α)·θ_a + α·θ_b``.

    The result is a deep copy of ``model_a`` (same class, hooks, device, dtype and mode) whose
    parameters and floating-point buffers are interpolated; integer buffers (BatchNorm's
    ``num_batches_tracked``) are model_a's. Neither input is modified.

    Interpolated BatchNorm running statistics are not the statistics of the interpolated
    network's activations (the mean of two variances is not the variance of the mean network);
    pass ``bn_inputs`` to re-estimate them from data, as ``torch.optim.swa_utils.update_bn`` does.

    Parameters
    ----------
    model_a, model_b : nn.Module
        Two models of the same class with the same parameter and buffer names and shapes (two
        checkpoints of one run, two runs from one initialisation, ...). model_b may live on
        another device; its tensors are copied to model_a's.
    alpha : float
        Interpolation weight: 0 gives model_a's weights, 1 model_b's (exactly). Values outside
        [0, 1] extrapolate along the line.
    bn_inputs : Tensor, ndarray, mapping, Dataset or DataLoader, optional
        Inputs whose forward passes (in training mode, no gradients) replace every BatchNorm
        layer's running statistics. Ignored for models without BatchNorm.
    batch_size : int
        Samples per forward pass for ``bn_inputs``.

    Returns
    -------
    nn.Module
        The interpolated copy, on model_a's device.

    Raises
    ------
    ValueError
        Different classes, or the first parameter or buffer whose name or shape differs between
        the two models (the message names it); a non-finite ``alpha``.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> mid = interpolate(a, b, 0.5)
    >>> torch.allclose(mid.weight, (a.weight + b.weight) / 2)
    True
    """
    alpha = _check_alpha(alpha)
    _check_same_architecture(model_a, model_b)
    out = copy.deepcopy(model_a)
    tensors_b: dict[str, torch.Tensor] = dict(model_b.named_parameters())
    tensors_b.update(dict(model_b.named_buffers()))
    with torch.no_grad():
        for name, t in [*out.named_parameters(), *out.named_buffers()]:
            if not t.is_floating_point():
                continue
            tb = tensors_b[name].to(device=t.device, dtype=t.dtype)
            t.mul_(1.0 - alpha).add_(tb, alpha=alpha)
    if bn_inputs is not None:
        _recompute_bn(out, bn_inputs, _check_batch_size(batch_size))
    return out


# ---- loss barrier ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossBarrier:
    """Loss and accuracy along the line between two models (Frankle et al. 2020).

    Attributes
    ----------
    alphas : ndarray [S] float64
        Interpolation weights, ``linspace(0, 1, steps)``; 0 is model_a.
    loss : ndarray [S] float64
        Mean loss over the samples at each α.
    accuracy : ndarray [S] float64 or None
        Share of samples whose argmax output equals the label (None unless the output is
        ``[B, C]`` and the labels integer class indices ``[B]``).
    barrier : float
        ``max_α [loss(α) − ((1 − α)·loss(0) + α·loss(1))]``, in the loss's units; >= 0 as the
        endpoints are on the grid. About 0: linearly mode connected.
    barrier_alpha : float
        The α where the maximum is reached.
    error_barrier : float or None
        The same for the error ``1 − accuracy`` (the "instability" of Frankle et al.), in [0, 1].
    bn_reset : bool
        Whether BatchNorm statistics were re-estimated at every α.
    """

    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    barrier: float
    barrier_alpha: float
    error_barrier: float | None
    bn_reset: bool

    @property
    def linear_path(self) -> np.ndarray:
        """The straight line between the endpoint losses, ``(1 − α)·loss(0) + α·loss(1)`` [S]."""
        return (1.0 - self.alphas) * self.loss[0] + self.alphas * self.loss[-1]


@torch.no_grad()
def _evaluate(
    model: nn.Module, inputs: Any, labels: Any, loss_fn: LossFn, batch_size: int
) -> tuple[float, float | None]:
    total, correct, seen, has_accuracy = 0.0, 0, 0, True
    with module_mode(model, training=False):
        for n_b, batch, y_b, _ in _batches(model, inputs, labels, batch_size):
            z = _logits(model, batch)
            total += float(loss_fn(z, y_b)) * n_b
            seen += n_b
            if has_accuracy and z.ndim == 2 and y_b.ndim == 1 and not y_b.is_floating_point():
                correct += int((z.argmax(1) == y_b).sum())
            else:
                has_accuracy = False
    return total / seen, (correct / seen if has_accuracy else None)


def _barrier(alphas: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    excess = values - ((1.0 - alphas) * values[0] + alphas * values[-1])
    i = int(np.argmax(excess))
    return float(excess[i]), float(alphas[i])


def loss_barrier(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: Any,
    labels: Any,
    *,
    steps: int = 11,
    loss_fn: LossFn = F.cross_entropy,
    batch_size: int = 256,
    reset_bn: bool = False,
) -> LossBarrier:
    """Loss and accuracy along ``θ(α) = (1 − α)·θ_a + α·θ_b`` and the loss barrier between two models.

    Each α on ``linspace(0, 1, steps)`` builds :func:`interpolate` ``(model_a, model_b, α)`` and
    evaluates it (eval mode, no gradients) on every sample. The barrier is ``max_α [L(α) −
    ((1 − α)L(0) + αL(1))]`` (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery
    Ticket Hypothesis", who call two networks linearly connected when it is about 0; they use
    the error, reported here as ``error_barrier``). A finer grid can only find a higher barrier.

    Parameters
    ----------
    model_a, model_b : nn.Module
        Two models of the same architecture (see :func:`interpolate`). Not modified.
    inputs : Tensor, ndarray [N, ...], mapping of keyword arguments, Dataset or DataLoader
        The evaluation samples (a DataLoader must not shuffle: labels follow its order).
    labels : Tensor or ndarray [N, ...]
        Targets for ``loss_fn``; integer class indices ``[N]`` also give the accuracy.
    steps : int
        Number of α values, >= 2.
    loss_fn : callable
        ``loss_fn(outputs, labels_batch)`` -> scalar mean over the batch; default cross-entropy on
        logits. ``outputs`` is the model's output tensor (its first tensor, as in :class:`Probe`).
    batch_size : int
        Samples per forward pass.
    reset_bn : bool
        Re-estimate every BatchNorm layer's running statistics from ``inputs`` at each α,
        endpoints included (see :func:`interpolate`); without it, the interpolated statistics
        usually inflate the barrier of BatchNorm networks.

    Returns
    -------
    LossBarrier

    Raises
    ------
    ValueError
        Mismatched architectures (naming the first differing parameter), ``steps < 2``, a label
        count that differs from the number of inputs, or a model output with no tensor.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    >>> r = loss_barrier(a, b, x, y, steps=5)
    >>> r.alphas.tolist(), r.barrier  # the loss of a linear model is convex along the line
    ([0.0, 0.25, 0.5, 0.75, 1.0], 0.0)
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    batch_size = _check_batch_size(batch_size)
    _check_same_architecture(model_a, model_b)
    alphas = np.linspace(0.0, 1.0, int(steps))
    losses, accs = np.empty(len(alphas)), np.empty(len(alphas))
    has_acc = True
    for j, alpha in enumerate(alphas):
        model = interpolate(
            model_a, model_b, float(alpha), bn_inputs=inputs if reset_bn else None, batch_size=batch_size
        )
        losses[j], acc = _evaluate(model, inputs, labels, loss_fn, batch_size)
        has_acc = has_acc and acc is not None
        accs[j] = acc if acc is not None else np.nan
        del model
    barrier, at = _barrier(alphas, losses)
    error_barrier = _barrier(alphas, 1.0 - accs)[0] if has_acc else None
    return LossBarrier(
        alphas=alphas,
        loss=losses,
        accuracy=accs if has_acc else None,
        barrier=barrier,
        barrier_alpha=at,
        error_barrier=error_barrier,
        bn_reset=bool(reset_bn and _bn_modules(model_a)),
    )


# ---- Hessian -----------------------------------------------------------------------------------------------------
def _select_params(model: nn.Module, params: Sequence[str] | None) -> list[tuple[str, nn.Parameter]]:
    named = dict(model.named_parameters())
    if params is None:
        chosen = [(n, p) for n, p in named.items() if p.requires_grad]
    else:
        if isinstance(params, str):
            params = [params]
        unknown = [n for n in params if n not in named]
        if unknown:
            raise ValueError(f"params {unknown} are not parameters of the model; it has {list(named)[:20]}")
        chosen = [(n, named[n]) for n in dict.fromkeys(params)]
    if not chosen:
        raise ValueError("no parameters to differentiate: the model has none that require gradients")
    bad = [n for n, p in chosen if not p.is_floating_point()]
    if bad:
        raise ValueError(f"parameters {bad} are not floating point")
    return chosen


class _HVP:
    """Hessian-vector products of the sample-weighted mean loss with respect to chosen parameters.

    One batch: the gradient graph is built once and reused for every product. Several batches:
    each product re-runs the forward and backward passes batch by batch (memory of one batch).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: Any,
        labels: Any,
        params: Sequence[tuple[str, nn.Parameter]],
        batch_size: int,
    ) -> None:
        self.model, self.loss_fn, self.inputs, self.labels = model, loss_fn, inputs, labels
        self.params = [p for _, p in params]
        self.batch_size = batch_size
        self.sizes = [p.numel() for p in self.params]
        self.n = sum(self.sizes)
        self.device = self.params[0].device
        self.dtype = self.params[0].dtype
        self._cached: tuple[torch.Tensor, ...] | None = None

    def _grads(self, n_b: int, batch: Any, y_b: torch.Tensor, n_total: int) -> tuple[torch.Tensor, ...]:
        loss = self.loss_fn(_logits(self.model, batch), y_b)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar tensor (the mean over the batch), got {shape}")
        # allow_unused: a parameter off the loss's path (an unused head) has zero rows and columns in H
        return torch.autograd.grad(loss * (n_b / n_total), self.params, create_graph=True, allow_unused=True)

    def _product(self, grads: tuple[torch.Tensor | None, ...], vs: list[torch.Tensor], keep: bool) -> torch.Tensor:
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        hv: list[torch.Tensor | None] = [None] * len(self.params)
        if live:
            parts = torch.autograd.grad(
                [g for i in live if (g := grads[i]) is not None],
                self.params,
                grad_outputs=[vs[i] for i in live],
                retain_graph=keep,
                allow_unused=True,
            )
            hv = list(parts)
        flat = [torch.zeros_like(p) if h is None else h for h, p in zip(hv, self.params)]
        return torch.cat([h.reshape(-1) for h in flat]).to(device="cpu", dtype=torch.float64)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat vector ``v`` [P] (any dtype); returned flat, float64, on the CPU."""
        flat = v.to(device=self.device, dtype=self.dtype)
        vs = [c.view_as(p) for c, p in zip(torch.split(flat, self.sizes), self.params)]
        if self._cached is not None:
            return self._product(self._cached, vs, keep=True)
        gen = _batches(self.model, self.inputs, self.labels, self.batch_size)
        total = torch.zeros(self.n, dtype=torch.float64)
        for b in gen:
            grads = self._grads(*b)
            if b[0] == b[3]:  # one batch holds every sample: keep its gradient graph for later products
                next(gen, None)  # runs the label-count checks (raises if the inputs hold more samples)
                self._cached = grads
                return self._product(grads, vs, keep=True)
            total += self._product(grads, vs, keep=False)
        return total


@contextmanager
def _hessian_context(model: nn.Module, params: list[tuple[str, nn.Parameter]]):
    """Eval mode and gradients on exactly the chosen parameters; both restored afterwards."""
    flags = {p: p.requires_grad for p in model.parameters()}
    chosen = {id(p) for _, p in params}
    try:
        for p in flags:
            p.requires_grad_(id(p) in chosen)
        with module_mode(model, training=False):
            yield
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Any,
    labels: Any,
    *,
    k: int = 5,
    which: Literal["LA", "SA", "LM"] = "LA",
    iters: int | None = None,
    tol: float = 1e-6,
    seed: int = 0,
    batch_size: int = 1024,
    params: Sequence[str] | None = None,
    return_eigenvectors: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top-k eigenvalues of the Hessian of the loss with respect to the model's parameters.

    ``H = ∇²_θ L(θ)`` with ``L`` the mean of ``loss_fn`` over all samples. H is never formed: the
    implicitly restarted Lanczos method of ARPACK (``scipy.sparse.linalg.eigsh``) runs on
    Hessian-vector products ``Hv = ∇_θ (∇_θ L · v)`` (double backward; Pearlmutter 1994), each
    costing about two backward passes over the data. The top of the spectrum is a few outliers
    above a bulk near zero, about one per class (Sagun et al. 2018, "Empirical Analysis of the
    Hessian of Over-Parametrized Neural Networks").

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode (dropout off, BatchNorm running statistics), restored afterwards.
    loss_fn : callable
        ``loss_fn(outputs, labels_batch)`` -> scalar mean over the batch (e.g.
        ``torch.nn.functional.cross_entropy``); ``outputs`` is the model's output tensor.
    inputs : Tensor, ndarray [N, ...], mapping of keyword arguments, Dataset or DataLoader
        The samples (a DataLoader must not shuffle: labels follow its order).
    labels : Tensor or ndarray [N, ...]
        Targets passed to ``loss_fn`` batch by batch.
    k : int
        Number of eigenvalues, ``1 <= k < P`` (P: number of differentiated parameters).
    which : {"LA", "SA", "LM"}
        Largest algebraic (default: the top, sharpest directions), smallest algebraic (the most
        negative: saddle directions), or largest magnitude.
    iters : int, optional
        Maximum number of Arnoldi update iterations (``eigsh``'s ``maxiter``; default 10·P).
    tol : float
        Relative accuracy of the eigenvalues (``eigsh``'s ``tol``). Hessian-vector products of a
        float32 model carry relative rounding of about 1e-6, so smaller values only add iterations.
    seed : int
        Seed of the Lanczos starting vector (results are reproducible).
    batch_size : int
        Samples per forward/backward pass. With a single batch its gradient graph is kept and
        reused by every product (fast); otherwise each product re-runs every batch.
    params : sequence of str, optional
        Names (``model.named_parameters()``) of the parameters to differentiate, e.g. one
        layer's; default every parameter that requires gradients.
    return_eigenvectors : bool
        Also return the unit eigenvectors.

    Returns
    -------
    eigenvalues : ndarray [k] float64
        In the loss's units per squared parameter unit; descending for "LA", ascending for "SA",
        by descending magnitude for "LM".
    eigenvectors : ndarray [P, k] float64
        Only with ``return_eigenvectors=True``; column j belongs to ``eigenvalues[j]``. Rows follow
        the chosen parameters in ``named_parameters()`` order, each flattened (``reshape(-1)``).

    Raises
    ------
    ValueError
        ``k`` outside ``1 <= k < P``, an unknown ``which``, unknown parameter names, a label count
        that differs from the inputs, or a non-scalar loss.
    RuntimeError
        If Lanczos does not converge within ``iters`` (raise ``iters`` or ``tol``).

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(100, 4), torch.randint(0, 3, (100,))
    >>> top = hessian_eigenvalues(model, torch.nn.functional.cross_entropy, x, y, k=3)
    >>> top.shape, bool(top[0] >= top[1] >= top[2])
    ((3,), True)
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    if which not in ("LA", "SA", "LM"):
        raise ValueError(f"which must be 'LA', 'SA' or 'LM', got {which!r}")
    batch_size = _check_batch_size(batch_size)
    chosen = _select_params(model, params)
    n_params = sum(p.numel() for _, p in chosen)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n_params:
        raise ValueError(f"k must be an integer with 1 <= k < P = {n_params} (parameters differentiated), got {k!r}")
    if iters is not None and (isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1):
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if not (isinstance(tol, numbers.Real) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    with _hessian_context(model, chosen):
        hvp = _HVP(model, loss_fn, inputs, labels, chosen, batch_size)
        op = LinearOperator(
            (n_params, n_params), matvec=lambda v: hvp(torch.from_numpy(np.ravel(v))).numpy(), dtype=np.float64
        )
        v0 = np.random.default_rng(seed).standard_normal(n_params)
        try:
            vals, vecs = eigsh(op, k=int(k), which=which, tol=float(tol), maxiter=iters, v0=v0)
        except ArpackNoConvergence as exc:
            raise RuntimeError(
                f"Lanczos did not converge to tol={tol} within {iters or 10 * n_params} iterations "
                f"({len(exc.eigenvalues)} of {k} eigenvalues converged); raise iters= or tol="
            ) from exc
    order = np.argsort(-np.abs(vals) if which == "LM" else (vals if which == "SA" else -vals), kind="stable")
    vals, vecs = vals[order], vecs[:, order]
    return (vals, vecs) if return_eigenvectors else vals


@dataclass(frozen=True)
class HessianTrace:
    """Hutchinson estimate of the Hessian's trace.

    Attributes
    ----------
    trace : float
        ``(1/m) Σ_j v_jᵀ H v_j`` over m Rademacher vectors.
    std_error : float
        Standard error of that mean, ``std(samples, ddof=1) / √m`` (NaN for m = 1).
    samples : ndarray [m] float64
        The single-vector estimates ``v_jᵀ H v_j``.
    """

    trace: float
    std_error: float
    samples: np.ndarray

    def __float__(self) -> float:
        return self.trace


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Any,
    labels: Any,
    *,
    n_samples: int = 100,
    seed: int = 0,
    batch_size: int = 1024,
    params: Sequence[str] | None = None,
) -> HessianTrace:
    """Trace of the loss Hessian by Hutchinson's estimator with Rademacher vectors.

    ``tr H = E[vᵀHv]`` for ``v`` with independent ±1 entries (Hutchinson 1990, "A stochastic
    estimator of the trace of the influence matrix for Laplacian smoothing splines"); the
    variance of one sample is ``2 Σ_{i≠j} H_ij²``, so the error falls as ``1/√n_samples``. Each
    sample is one Hessian-vector product (as in :func:`hessian_eigenvalues`; also PyHessian,
    Yao et al. 2020). ``tr H / P`` is the mean curvature, a flatness measure.

    Parameters
    ----------
    model, loss_fn, inputs, labels, batch_size, params
        As in :func:`hessian_eigenvalues`.
    n_samples : int
        Number of random vectors m >= 1.
    seed : int
        Seed of the Rademacher vectors (results are reproducible).

    Returns
    -------
    HessianTrace
        ``trace`` (float, loss units per squared parameter unit), ``std_error`` and ``samples``.

    Raises
    ------
    ValueError
        ``n_samples < 1``, unknown parameter names, a label count that differs from the inputs,
        or a non-scalar loss.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(100, 4), torch.randint(0, 3, (100,))
    >>> est = hessian_trace(model, torch.nn.functional.cross_entropy, x, y, n_samples=50)
    >>> est.samples.shape, est.std_error < abs(est.trace)
    ((50,), True)
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    batch_size = _check_batch_size(batch_size)
    chosen = _select_params(model, params)
    n_params = sum(p.numel() for _, p in chosen)
    rng = np.random.default_rng(seed)
    samples = np.empty(int(n_samples))
    with _hessian_context(model, chosen):
        hvp = _HVP(model, loss_fn, inputs, labels, chosen, batch_size)
        for j in range(int(n_samples)):
            v = torch.from_numpy(rng.integers(0, 2, size=n_params).astype(np.float64) * 2.0 - 1.0)
            samples[j] = float(v @ hvp(v))
    se = float(samples.std(ddof=1) / math.sqrt(n_samples)) if n_samples > 1 else math.nan
    return HessianTrace(trace=float(samples.mean()), std_error=se, samples=samples)


# ---- spectral density (stochastic Lanczos quadrature) ----------------------------------------------------------------
def _lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor], q0: np.ndarray, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` Lanczos iterations with full reorthogonalisation from the unit vector ``q0``.

    Returns the tridiagonal's diagonal ``alpha`` [m] and off-diagonal ``beta`` [m − 1] (float64); m
    is smaller than ``steps`` when the Krylov space becomes invariant (``beta`` ≈ 0: the quadrature
    is then exact). Every new vector is orthogonalised twice against all previous ones (classical
    Gram-Schmidt, "twice is enough"), as the plain three-term recurrence loses orthogonality
    once a Ritz value converges and then repeats it as a ghost (Paige 1976; Golub & Van Loan,
    *Matrix Computations*, §10.3).
    """
    n = q0.shape[0]
    basis = np.empty((steps, n))
    basis[0] = q0
    alpha: list[float] = []
    beta: list[float] = []
    for j in range(steps):
        w = matvec(torch.from_numpy(basis[j])).numpy()
        a = float(basis[j] @ w)
        alpha.append(a)
        if j == steps - 1:
            break
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        b = float(np.linalg.norm(w))
        scale = max(abs(x) for x in (*alpha, *beta, 0.0))
        if not b > 1e-10 * scale:  # invariant subspace (also catches H = 0 and NaN)
            break
        beta.append(b)
        basis[j + 1] = w / b
    return np.asarray(alpha), np.asarray(beta)


@dataclass(frozen=True)
class HessianDensity:
    """Eigenvalue density of the loss Hessian by stochastic Lanczos quadrature.

    The spectral measure ``μ = (1/P) Σ_i δ(λ − λ_i)`` is approximated by the discrete distribution
    on ``nodes`` with probabilities ``weights``, and ``density`` is that distribution smoothed with
    a Gaussian of standard deviation ``sigma``.

    Attributes
    ----------
    grid : ndarray [G] float64
        Eigenvalue axis (loss units per squared parameter unit), increasing.
    density : ndarray [G] float64
        ``φ(t) = Σ_k w_k · N(t; θ_k, σ²)``; integrates to about 1 over the grid (exactly 1 over
        the real line).
    nodes : ndarray [K] float64
        Ritz values θ (eigenvalues of each vector's Lanczos tridiagonal), all vectors pooled.
    weights : ndarray [K] float64
        Their quadrature weights τ² (first components of the tridiagonal's eigenvectors,
        squared), divided by the number of vectors: non-negative, summing to 1.
    sigma : float
        Gaussian width used for ``density``.
    n_params : int
        P, the number of differentiated parameters (the Hessian is P × P).
    n_vectors : int
        Number of random starting vectors averaged.
    lanczos_steps : ndarray [n_vectors] int
        Lanczos steps actually run for each vector (fewer than asked when the Krylov space
        became invariant, and at most P).
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    n_params: int
    n_vectors: int
    lanczos_steps: np.ndarray

    def moment(self, order: int) -> float:
        """``Σ_k w_k θ_k^order``, an estimate of ``tr(H^order) / P`` (exact in expectation for order <= 2m − 1)."""
        return float(self.weights @ self.nodes**order)

    def count_above(self, threshold: float) -> float:
        """Estimated number of eigenvalues above ``threshold``: ``P · Σ_{θ_k > threshold} w_k``."""
        return float(self.n_params * self.weights[self.nodes > threshold].sum())

    def top_ritz_values(self, k: int = 10) -> np.ndarray:
        """The k largest Ritz values, descending: the median over vectors of each vector's j-th largest node.

        The extreme Ritz values of each Lanczos run converge first, to the isolated top
        eigenvalues (the outliers), so each vector's top values estimate the top of the spectrum.
        """
        per_vector = np.split(self.nodes, np.cumsum(self.lanczos_steps)[:-1])
        k = int(min(k, self.lanczos_steps.min()))
        return np.median(np.stack([np.sort(v)[::-1][:k] for v in per_vector]), axis=0)

    def count_outliers(self, eigenvalues: Any = None, *, max_outliers: int | None = None) -> int:
        """The number of top eigenvalues separated from the rest by the largest relative gap.

        Sorts the eigenvalues in descending order ``λ_1 >= λ_2 >= ...`` and returns the j with the
        largest ratio ``λ_j / λ_{j+1}`` over the positive values, a jump to ``λ_{j+1} <= 0``
        counting as infinite (the eigengap heuristic). The Hessian of a trained classifier has
        about one such outlier per class above a bulk near zero (Sagun et al. 2018; Papyan 2019,
        "Measurements of Three-Level Hierarchical Structure in the Outliers in the Spectrum of
        Deepnet Hessians"; Ghorbani et al. 2019).

        Parameters
        ----------
        eigenvalues : array-like [k], optional
            Top eigenvalues, e.g. from :func:`hessian_eigenvalues` (k of a few times the number of
            classes); default :meth:`top_ritz_values` ``(10)``.
        max_outliers : int, optional
            Consider cuts only up to this many outliers (default k − 1).

        Returns
        -------
        int
            Between 1 and k − 1. There is always a largest gap: judge its size from the values.

        Raises
        ------
        ValueError
            Fewer than two eigenvalues, or a non-positive largest eigenvalue.
        """
        vals = self.top_ritz_values() if eigenvalues is None else eigenvalues
        return _count_outliers(vals, max_outliers)


def _count_outliers(eigenvalues: Any, max_outliers: int | None = None) -> int:
    vals = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
    if vals.size < 2 or not vals[0] > 0:
        raise ValueError(f"need at least two eigenvalues with a positive largest one, got {vals.tolist()}")
    cuts = vals.size - 1 if max_outliers is None else max(1, min(int(max_outliers), vals.size - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(vals[1 : cuts + 1] > 0, vals[:cuts] / vals[1 : cuts + 1], np.inf)
    ratios[vals[:cuts] <= 0] = 0.0  # gaps below the positive part are not outlier cuts
    return int(np.argmax(ratios)) + 1


def _smooth(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    out = np.zeros_like(grid)
    norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
    for start in range(0, nodes.size, 256):  # [G, 256] blocks bound the memory
        z = (grid[:, None] - nodes[None, start : start + 256]) / sigma
        out += (np.exp(-0.5 * z * z) * norm) @ weights[start : start + 256]
    return out


def hessian_spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Any,
    labels: Any,
    *,
    n_vectors: int = 10,
    lanczos_steps: int = 80,
    grid: int | Any = 1000,
    sigma: float | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    params: Sequence[str] | None = None,
) -> HessianDensity:
    """Eigenvalue density of the loss Hessian by stochastic Lanczos quadrature (SLQ).

    For each of ``n_vectors`` random unit vectors ``v`` (standard Gaussian from
    ``numpy.random.default_rng(seed)``, one draw of P per vector, normalised: uniform on the
    sphere), m Lanczos steps with full reorthogonalisation on Hessian-vector products build the
    tridiagonal ``T_m``; with its eigenpairs ``T_m = U diag(θ) Uᵀ``, the Gauss quadrature
    ``vᵀ f(H) v ≈ Σ_i τ_i² f(θ_i)``, ``τ_i = U_{1i}``, is exact for polynomials of degree up to
    2m − 1, and ``E[vᵀ f(H) v] = tr f(H) / P``. Averaging over vectors and taking f a Gaussian
    gives the smoothed density ``φ(t) = (1/n_v) Σ_l Σ_i τ_{l,i}² N(t; θ_{l,i}, σ²)`` (Ubaru, Chen
    & Saad 2017, "Fast Estimation of tr(f(A)) via Stochastic Lanczos Quadrature"; Ghorbani,
    Krishnan & Xiao 2019, "An Investigation into Neural Net Optimization via Hessian Eigenvalue
    Density"). The bulk of a trained network's density sits near zero with a few outliers.

    Cost: ``n_vectors · lanczos_steps`` Hessian-vector products (each about two backward passes
    over the data, on the model's device) and ``lanczos_steps · P`` float64 numbers of CPU
    memory for the Lanczos basis.

    Parameters
    ----------
    model, loss_fn, inputs, labels, batch_size, params
        As in :func:`hessian_eigenvalues` (eval mode; mode and gradient flags restored).
    n_vectors : int
        Number of random starting vectors n_v >= 1. The moments' standard error falls as
        ``1/√(n_v·P)``; the weight on each outlier is noisier (about ``1/P`` per vector).
    lanczos_steps : int
        Lanczos steps m >= 1 per vector (capped at P). Resolves about m distinct features;
        Ghorbani et al. use 90.
    grid : int or array-like [G]
        Number of evenly spaced points over ``[min θ − 5σ, max θ + 5σ]``, or the points
        themselves (increasing).
    sigma : float, optional
        Gaussian width in eigenvalue units; default 0.5% of the Ritz values' range
        ``max θ − min θ`` (1 when that range is 0).
    seed : int
        Seed of the starting vectors (results are reproducible).

    Returns
    -------
    HessianDensity
        ``grid``, ``density``, the raw ``nodes`` / ``weights`` and helpers (``moment``,
        ``count_above``, ``count_outliers``).

    Raises
    ------
    ValueError
        Non-positive ``n_vectors``, ``lanczos_steps``, ``sigma`` or grid size, a grid that is not
        increasing, unknown parameter names, a label count that differs from the inputs, or a
        non-scalar loss.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(100, 4), torch.randint(0, 3, (100,))
    >>> d = hessian_spectral_density(model, torch.nn.functional.cross_entropy, x, y, n_vectors=2, lanczos_steps=20)
    >>> round(float(d.weights.sum()), 6), d.density.shape
    (1.0, (1000,))
    """
    for name, value in (("n_vectors", n_vectors), ("lanczos_steps", lanczos_steps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if sigma is not None and not (isinstance(sigma, numbers.Real) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        if grid < 2:
            raise ValueError(f"grid must hold at least 2 points, got {grid!r}")
        points = None
    else:
        points = np.asarray(grid, dtype=np.float64).ravel()
        if points.size < 2 or not np.all(np.diff(points) > 0):
            raise ValueError("grid must be an integer >= 2 or an increasing array of at least 2 points")
    batch_size = _check_batch_size(batch_size)
    chosen = _select_params(model, params)
    n_params = sum(p.numel() for _, p in chosen)
    steps = int(min(lanczos_steps, n_params))
    rng = np.random.default_rng(seed)
    all_nodes, all_weights, used = [], [], []
    with _hessian_context(model, chosen):
        hvp = _HVP(model, loss_fn, inputs, labels, chosen, batch_size)
        for _ in range(int(n_vectors)):
            v = rng.standard_normal(n_params)
            alpha, beta = _lanczos(hvp, v / np.linalg.norm(v), steps)
            theta, U = _tridiagonal_eigh(alpha, beta)
            all_nodes.append(theta)
            all_weights.append(U[0] ** 2 / n_vectors)
            used.append(alpha.size)
    nodes, weights = np.concatenate(all_nodes), np.concatenate(all_weights)
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = 0.005 * (hi - lo) if hi > lo else 1.0
    if points is None:
        points = np.linspace(lo - 5.0 * sigma, hi + 5.0 * sigma, int(grid))
    return HessianDensity(
        grid=points,
        density=_smooth(nodes, weights, points, float(sigma)),
        nodes=nodes,
        weights=weights,
        sigma=float(sigma),
        n_params=n_params,
        n_vectors=int(n_vectors),
        lanczos_steps=np.asarray(used, dtype=np.int64),
    )


def _tridiagonal_eigh(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.linalg import eigh_tridiagonal

    if alpha.size == 1:
        return alpha.copy(), np.ones((1, 1))
    return eigh_tridiagonal(alpha, beta)


# ---- loss surface ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossSurface:
    """The loss on a plane through the current weights, ``θ(α, β) = θ + α·d1 + β·d2``.

    Attributes
    ----------
    alphas, betas : ndarray [G] float64
        Coordinates along ``d1`` and ``d2``, increasing; (0, 0) is the current weights.
    loss : ndarray [G, G] float64
        ``loss[i, j]`` is the mean loss at ``(alphas[i], betas[j])`` ("ij" indexing: rows follow
        α; transpose for an image whose rows are β).
    accuracy : ndarray [G, G] float64 or None
        Share of samples whose argmax output equals the label (None unless the output is
        ``[B, C]`` and the labels integer class indices ``[B]``).
    d1, d2 : ndarray [P] float64
        The two directions, flat over ``param_names`` in order (each tensor ``reshape(-1)``),
        after normalisation.
    param_names : tuple of str
        The perturbed parameters, in ``named_parameters()`` order.
    directions : str
        "hessian", "random" or "given".
    eigenvalues : ndarray [2] float64 or None
        The Hessian eigenvalues of ``d1`` and ``d2`` (``directions="hessian"`` only).
    center_loss : float
        The loss at the current weights.
    center_accuracy : float or None
        The accuracy there.
    """

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    d1: np.ndarray
    d2: np.ndarray
    param_names: tuple[str, ...]
    directions: str
    eigenvalues: np.ndarray | None
    center_loss: float
    center_accuracy: float | None

    @property
    def center_index(self) -> tuple[int, int] | None:
        """``(i, j)`` with ``alphas[i] == betas[j] == 0`` (the current weights), or None if 0 is off the grid."""
        i, j = np.flatnonzero(self.alphas == 0.0), np.flatnonzero(self.betas == 0.0)
        return (int(i[0]), int(j[0])) if i.size and j.size else None


def _normalize_direction(
    d: list[torch.Tensor], weights: list[torch.Tensor], how: Literal["filter", "layer"] | None
) -> list[torch.Tensor]:
    """Li et al. 2018's normalisation of a direction, per parameter tensor (float64 tensors).

    "filter": each slice ``d[i]`` along dim 0 (a convolution's output filter, a linear layer's
    row) is rescaled to the norm of the matching weight slice; "layer": each tensor to its
    weight tensor's norm. Either way 1-D parameters (biases, BatchNorm/LayerNorm scales and
    shifts) are set to zero, the paper's default (``--xignore biasbn``). A zero slice stays zero.
    """
    if how is None:
        return d
    out = []
    for di, wi in zip(d, weights):
        if di.ndim <= 1:
            out.append(torch.zeros_like(di))
            continue
        dims = tuple(range(1, di.ndim)) if how == "filter" else tuple(range(di.ndim))
        dn = torch.linalg.vector_norm(di, dim=dims, keepdim=True)
        wn = torch.linalg.vector_norm(wi, dim=dims, keepdim=True)
        out.append(torch.where(dn > 0, di * (wn / torch.where(dn > 0, dn, 1.0)), 0.0))
    return out


def _given_direction(d: Any, chosen: list[tuple[str, nn.Parameter]], which: str) -> list[torch.Tensor]:
    shapes = [p.shape for _, p in chosen]
    n_params = sum(p.numel() for _, p in chosen)
    if isinstance(d, dict):
        names = [n for n, _ in chosen]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ValueError(f"{which} names {unknown}, which are not among the perturbed parameters {names[:20]}")
        out = []
        for n, p in chosen:
            if n not in d:
                out.append(torch.zeros(p.shape, dtype=torch.float64))
                continue
            t = torch.as_tensor(d[n]).detach().to(device="cpu", dtype=torch.float64)
            if t.shape != p.shape:
                raise ValueError(f"{which}[{n!r}] has shape {tuple(t.shape)}, the parameter {tuple(p.shape)}")
            out.append(t)
        return out
    t = torch.as_tensor(d).detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    if t.numel() != n_params:
        raise ValueError(f"{which} must hold P = {n_params} numbers (the perturbed parameters, flat), got {t.numel()}")
    return [c.view(s) for c, s in zip(torch.split(t, [math.prod(s) for s in shapes]), shapes)]


def _grid_axis(span: Any, resolution: int) -> np.ndarray:
    if isinstance(span, numbers.Real) and not isinstance(span, bool):
        half = float(span)
        if not (math.isfinite(half) and half > 0):
            raise ValueError(f"span must be a positive number or a (low, high) pair, got {span!r}")
        lo, hi = -half, half
    else:
        try:
            lo, hi = (float(s) for s in span)
        except (TypeError, ValueError):
            raise ValueError(f"span must be a positive number or a (low, high) pair, got {span!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"span must be a positive number or a (low, high) pair with low < high, got {span!r}")
    axis = np.linspace(lo, hi, resolution)
    axis[np.isclose(axis, 0.0, rtol=0.0, atol=1e-12 * (hi - lo))] = 0.0  # the centre exactly on the grid
    return axis


def loss_surface(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Any,
    labels: Any,
    *,
    directions: Literal["hessian", "random"] | tuple[Any, Any] = "hessian",
    span: float | tuple[float, float] = 1.0,
    resolution: int = 21,
    seed: int = 0,
    normalize: Literal["filter", "layer"] | None = "filter",
    batch_size: int = 1024,
    params: Sequence[str] | None = None,
) -> LossSurface:
    """The loss (and accuracy) on a plane through the current weights: ``L(θ + α·d1 + β·d2)``.

    Each of the ``resolution²`` grid points sets the parameters to ``θ + α·d1 + β·d2`` and
    evaluates the mean loss over every sample (eval mode, no gradients). Afterwards the model's
    parameters hold their original values bit for bit, and its train/eval mode is restored.

    Parameters
    ----------
    model, loss_fn, inputs, labels, batch_size, params
        As in :func:`hessian_eigenvalues`; ``params`` names the perturbed parameters (default
        every parameter that requires gradients). Buffers (BatchNorm running statistics) are
        never perturbed.
    directions : "hessian", "random" or (d1, d2)
        "hessian": the unit eigenvectors of the two largest Hessian eigenvalues
        (:func:`hessian_eigenvalues` with ``k=2``), the sharpest plane (not normalised further).
        "random": two independent standard Gaussian directions, normalised per ``normalize``
        (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of Neural
        Nets"). A pair: each a flat array-like [P] over the perturbed parameters in
        ``named_parameters()`` order, or a mapping parameter name -> tensor (missing names are
        zero), normalised per ``normalize`` (pass ``normalize=None`` to use them as given, e.g.
        the difference to another model's weights).
    span : float or (low, high)
        The grid covers ``[-span, span]`` (or ``[low, high]``) along both directions. With
        filter normalisation 1 is a step as long as the weights themselves, filter by filter.
    resolution : int
        Grid points G >= 2 per axis; an odd G with a symmetric span puts (0, 0) on the grid.
    seed : int
        Seed of the random directions.
    normalize : {"filter", "layer", None}
        "filter": each filter (slice along dim 0: a convolution's output channel, a linear
        layer's row) of the direction is rescaled to the norm of the matching weight filter,
        ``d_i ← d_i · ‖θ_i‖ / ‖d_i‖`` (Li et al. 2018, their default); "layer": each tensor as a
        whole. Both set 1-D parameters (biases, normalisation layers' scales and shifts) to zero,
        as the paper's default does. Ignored for "hessian".

    Returns
    -------
    LossSurface
        ``alphas``, ``betas``, ``loss`` [G, G] (``loss[i, j]`` at ``alphas[i], betas[j]``),
        ``accuracy``, the directions ``d1``, ``d2`` and the loss at the centre.

    Raises
    ------
    ValueError
        An unknown ``directions`` or ``normalize``, directions of the wrong size or shape, a
        direction that is zero after normalisation, ``resolution < 2``, a bad ``span``, unknown
        parameter names, a label count that differs from the inputs, or a non-scalar loss.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(100, 4), torch.randint(0, 3, (100,))
    >>> s = loss_surface(model, torch.nn.functional.cross_entropy, x, y, directions="random", resolution=5)
    >>> s.loss.shape, s.center_index, bool(s.loss[2, 2] == s.center_loss)
    ((5, 5), (2, 2), True)
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    if normalize not in ("filter", "layer", None):
        raise ValueError(f"normalize must be 'filter', 'layer' or None, got {normalize!r}")
    axis = _grid_axis(span, int(resolution))
    batch_size = _check_batch_size(batch_size)
    chosen = _select_params(model, params)
    names = tuple(n for n, _ in chosen)
    shapes = [p.shape for _, p in chosen]
    weights = [p.detach().to(device="cpu", dtype=torch.float64) for _, p in chosen]
    eigenvalues = None
    if isinstance(directions, str) and directions == "hessian":
        kind = "hessian"
        eigenvalues, vecs = hessian_eigenvalues(
            model,
            loss_fn,
            inputs,
            labels,
            k=2,
            seed=seed,
            batch_size=batch_size,
            params=list(names),
            return_eigenvectors=True,
        )
        pair = [_given_direction(vecs[:, j], chosen, f"d{j + 1}") for j in range(2)]
    elif isinstance(directions, str) and directions == "random":
        kind = "random"
        g = torch.Generator().manual_seed(int(seed))
        pair = [[torch.randn(s, generator=g, dtype=torch.float64) for s in shapes] for _ in range(2)]
        pair = [_normalize_direction(d, weights, normalize) for d in pair]
    elif isinstance(directions, (tuple, list)) and len(directions) == 2 and not isinstance(directions, str):
        kind = "given"
        pair = [_given_direction(d, chosen, f"d{j + 1}") for j, d in enumerate(directions)]
        pair = [_normalize_direction(d, weights, normalize) for d in pair]
    else:
        raise ValueError(f"directions must be 'hessian', 'random' or a pair (d1, d2), got {directions!r}")
    flat = [torch.cat([t.reshape(-1) for t in d]).numpy() for d in pair]
    for j, f in enumerate(flat):
        if not np.any(f):
            raise ValueError(
                f"d{j + 1} is zero after {normalize!r} normalisation (it holds only 1-D parameters such as biases?)"
            )
    params_t = [p for _, p in chosen]
    originals = [p.detach().clone() for p in params_t]
    steps = [[t.to(device=p.device, dtype=p.dtype) for t, p in zip(d, params_t)] for d in pair]
    loss = np.empty((axis.size, axis.size))
    acc = np.empty((axis.size, axis.size))
    has_acc = True
    try:
        center_loss, center_acc = _evaluate(model, inputs, labels, loss_fn, batch_size)
        for i, a in enumerate(axis):
            for j, b in enumerate(axis):
                with torch.no_grad():
                    for p, p0, s1, s2 in zip(params_t, originals, *steps):
                        p.copy_(p0 + float(a) * s1 + float(b) * s2)
                loss[i, j], acc_ij = _evaluate(model, inputs, labels, loss_fn, batch_size)
                has_acc = has_acc and acc_ij is not None
                acc[i, j] = acc_ij if acc_ij is not None else np.nan
    finally:
        with torch.no_grad():
            for p, p0 in zip(params_t, originals):
                p.copy_(p0)
    return LossSurface(
        alphas=axis,
        betas=axis.copy(),
        loss=loss,
        accuracy=acc if has_acc else None,
        d1=flat[0],
        d2=flat[1],
        param_names=names,
        directions=kind,
        eigenvalues=eigenvalues,
        center_loss=center_loss,
        center_accuracy=center_acc,
    )
