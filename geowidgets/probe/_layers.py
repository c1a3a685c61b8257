"""Listing a model's layers and resolving layer names."""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = [
    "LayerInfo",
    "list_layers",
    "resolve_layers",
    "leaf_layer_names",
    "default_layers",
    "select_output",
    "own_forward_hook",
    "module_mode",
]

# Modules whose output repeats their input (or a reshaped copy of it): never a layer of their own by default.
_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten)
# Parameter-light modules that finish the block before them (conv -> norm -> activation -> pool): the block's
# output is theirs, so they are folded into it instead of being listed as layers of their own.
_EPILOGUE = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


def own_forward_hook(module: nn.Module, hook: Callable[..., Any], *, pre: bool = False) -> RemovableHandle:
    """Register a forward hook (``pre``: a forward pre-hook) that runs only in the calling thread.

    geowidgets hooks the user's own model while it captures activations, patches a layer or lists
    layers, often on a background thread while the notebook keeps running. A forward pass the user
    makes meanwhile on another thread (``model(x)`` in the next cell, a training step) fires every
    hook on the model: a plain hook would record that pass's rows as a batch of the capture, or
    patch the user's own outputs. This hook runs only for forward passes made by the thread that
    registered it, and is a no-op for every other.

    Parameters
    ----------
    module : torch.nn.Module
    hook : callable
        ``hook(module, args, output)`` (``pre``: ``hook(module, args)``), as for
        ``register_forward_hook``; its return value replaces the output (the arguments) as usual.
    pre : bool
        Register a forward pre-hook instead.

    Returns
    -------
    torch.utils.hooks.RemovableHandle

    Examples
    --------
    >>> import threading, torch
    >>> lin, seen = torch.nn.Linear(2, 2), []
    >>> handle = own_forward_hook(lin, lambda m, args, out: seen.append(out.shape[0]))
    >>> _ = lin(torch.zeros(3, 2))  # this thread: recorded
    >>> t = threading.Thread(target=lambda: lin(torch.zeros(5, 2))); t.start(); t.join()  # another: not
    >>> handle.remove(); seen
    [3]
    """
    owner = threading.get_ident()
    if pre:

        def gated_pre(m: nn.Module, args: Any) -> Any:
            return hook(m, args) if threading.get_ident() == owner else None

        return module.register_forward_pre_hook(gated_pre)

    def gated(m: nn.Module, args: Any, out: Any) -> Any:
        return hook(m, args, out) if threading.get_ident() == owner else None

    return module.register_forward_hook(gated)


def every_module(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` and every module under it, each once, through ``_modules`` (what ``train()`` reaches).

    Unlike ``model.modules()``, this does not go through ``named_modules``, which a wrapper may
    override (the session's prediction model lists only the wrapped model's modules, not its head).
    """
    seen: set[int] = set()
    stack = [model]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        yield m
        stack.extend(child for child in reversed(list(m._modules.values())) if child is not None)


@contextmanager
def module_mode(model: nn.Module, training: bool = False) -> Iterator[None]:
    """Every module of ``model`` in training (or eval) mode inside the block; each gets its own flag back after.

    The one mode switch of geowidgets (captures, slices, layer listing, landscapes). Restoring each
    module's own flag matters: ``model.train(was_training)`` would also switch a module the user
    keeps in eval mode inside a training model (a frozen BatchNorm while fine-tuning).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).train()
    >>> _ = model[1].eval()  # frozen statistics
    >>> with module_mode(model, training=False):
    ...     inside = [m.training for m in model.modules()]
    >>> inside, [m.training for m in model.modules()]
    ([False, False, False], [True, True, False])
    """
    switched = [m for m in every_module(model) if m.training != training]
    for m in switched:
        m.training = training
    try:
        yield
    finally:
        for m in switched:
            m.training = not training


@dataclass(frozen=True)
class LayerInfo:
    """One module of a model, as seen during a forward pass.

    Attributes
    ----------
    name : str
        Dotted name as in ``model.named_modules()`` (e.g. ``"encoder.1"``).
    type : str
        Class name of the module (e.g. ``"Linear"``).
    output_shape : tuple of int
        Shape of its (selected) output for the example input, batch dimension included.
    calls : int
        How many times the module ran in one forward pass (> 1 for shared modules).
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    calls: int = 1


def select_output(out: Any, select: int | str = 0) -> torch.Tensor | None:
    """Pick the tensor a layer produced: itself, element ``select`` of a tuple/list, or key of a dict.

    Objects with ``last_hidden_state`` (Hugging Face model outputs) give that tensor.
    Returns None if no tensor can be found.
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) or hasattr(out, "keys"):
        if isinstance(select, str) and select in out:
            return select_output(out[select])
        vals = list(out.values())
        return select_output(vals[select]) if isinstance(select, int) and -len(vals) <= select < len(vals) else None
    if isinstance(out, (tuple, list)):
        if isinstance(select, int) and -len(out) <= select < len(out):
            return select_output(out[select])
        return None
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    return None


def leaf_layer_names(model: nn.Module) -> list[str]:
    """Names of modules without children (the default layers of a :class:`Probe`)."""
    return [name for name, m in model.named_modules() if name and not any(True for _ in m.children())]


def _is_activation(module: nn.Module) -> bool:
    return type(module).__module__ == nn.modules.activation.__name__ and not isinstance(module, nn.MultiheadAttention)


def default_layers(model: nn.Module) -> list[str]:
    """The outputs of a model's blocks: the default layers of a :class:`~geowidgets.Session`.

    The blocks are the model's top-level children (through a single wrapping child, e.g. a
    model whose only child is ``features``), in definition order:

    * pass-through modules (Dropout, Identity, Flatten) are skipped: their output repeats the
      layer before them;
    * a normalisation, activation or pooling module right after a leaf layer ends that layer's
      block, whose output becomes theirs (``conv1 -> bn1 -> relu -> maxpool`` gives ``maxpool``);
      right after a container block (a ``nn.Sequential`` stage, a residual block) it is a
      re-view of the block's output and is skipped;
    * a container block (e.g. a ResNet stage ``layer1``) is one layer: its output;
    * a ``nn.ModuleList`` / ``nn.ModuleDict`` (a transformer's ``blocks``) is never called itself:
      each of its elements is a block.

    A model without children gives ``[""]`` (the model's own output).

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    list of str
        Names as in ``model.named_modules()``.

    Examples
    --------
    >>> from torch import nn
    >>> mlp = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> default_layers(mlp)
    ['1', '4', '5']
    >>> cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    ...                     nn.Dropout(), nn.Linear(4, 2))
    >>> default_layers(cnn)
    ['3', '6']
    """
    prefix, parent = "", model
    children = list(parent.named_children())
    while len(children) == 1 and any(True for _ in children[0][1].children()):
        prefix = f"{prefix}{children[0][0]}."
        parent = children[0][1]
        children = list(parent.named_children())
    if not children:
        return [prefix[:-1]] if prefix else [""]
    out: list[str] = []
    previous_is_leaf = False
    for name, module in children:
        if isinstance(module, _PASS_THROUGH):
            continue
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):  # a holder, never called: its elements are blocks
            out += [f"{prefix}{name}.{sub}" for sub, _ in module.named_children()]
            previous_is_leaf = False
            continue
        is_leaf = not any(True for _ in module.children())
        if is_leaf and (isinstance(module, _EPILOGUE) or _is_activation(module)) and out:
            if previous_is_leaf:
                out[-1] = prefix + name  # the block's output is the epilogue's
            continue  # after a container: a re-view of its output
        out.append(prefix + name)
        previous_is_leaf = is_leaf
    return out


def resolve_layers(model: nn.Module, layers: Any) -> list[str]:
    """Validate layer names against ``model.named_modules()``.

    Raises
    ------
    KeyError
        For an unknown name, suggesting close matches.
    """
    modules = dict(model.named_modules())
    if layers is None:
        names = leaf_layer_names(model)
        if not names:
            raise ValueError("the model has no submodules; pass layers=[''] to capture the whole model's output")
        return names
    if isinstance(layers, str):
        layers = [layers]
    out = []
    for name in layers:
        if not isinstance(name, str):
            raise KeyError(f"layer names must be strings as in model.named_modules(), got {name!r}")
        if name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            avail = ", ".join(repr(n) for n in list(modules)[1:8])
            raise KeyError(
                f"unknown layer {name!r}.{hint} Available layers include {avail} (see gw.list_layers(model, x))."
            )
        if name in out:
            raise ValueError(f"layer {name!r} is listed twice")
        out.append(name)
    return out


def list_layers(model: nn.Module, example_input: Any, *, select: int | str = 0) -> list[LayerInfo]:
    """List every submodule that runs on ``example_input``, in the order each is first entered.

    Parameters
    ----------
    model : nn.Module
    example_input : Tensor, tuple of Tensors or mapping
        A small batch (one sample is enough): a tensor for ``model(x)``, a tuple for
        ``model(*inputs)``, or a mapping of keyword arguments (e.g. a tokenizer's output) for
        ``model(**inputs)``.
    select : int or str
        Which element of a tuple/dict output is reported (default the first).

    Returns
    -------
    list of LayerInfo

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    >>> [(l.name, l.type, l.output_shape) for l in list_layers(model, torch.zeros(2, 4))]
    [('0', 'Linear', (2, 3)), ('1', 'ReLU', (2, 3))]
    """
    seen: dict[str, list] = {}
    order: list[str] = []
    handles = []

    def make_hook(name: str, module: nn.Module):
        def hook(_m, _inp, out):
            t = select_output(out, select)
            shape = tuple(t.shape) if t is not None else ()
            if name in seen:
                seen[name][2] += 1
            else:
                seen[name] = [type(module).__name__, shape, 1]

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(own_forward_hook(module, make_hook(name, module)))
                handles.append(
                    own_forward_hook(
                        module, lambda _m, _i, name=name: order.append(name) if name not in order else None, pre=True
                    )
                )
        with module_mode(model, training=False), torch.inference_mode():
            if isinstance(example_input, Mapping):
                model(**example_input)
            elif isinstance(example_input, (tuple, list)):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for h in handles:
            h.remove()
    return [LayerInfo(name, *seen[name]) for name in order if name in seen]
