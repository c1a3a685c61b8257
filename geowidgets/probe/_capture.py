"""Capturing layer activations with forward hooks, batched, cached, always cleaned up."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from geowidgets.probe._device import resolve_device
from geowidgets.probe._layers import resolve_layers, select_output

__all__ = ["Probe", "Activations", "pool", "model_device", "model_fingerprint", "iterate_batches", "Pooling"]

Pooling = Literal["flatten", "mean", "first", "cls", "last"]
_POOLINGS = ("flatten", "mean", "first", "cls", "last")
_OUTPUT = "__output__"


def pool(t: torch.Tensor, pooling: str = "flatten") -> torch.Tensor:
    """Reduce a batch of layer outputs ``[B, ...]`` to ``[B, D]``.

    Parameters
    ----------
    t : Tensor
        Layer output with the batch first.
    pooling : {"flatten", "mean", "first", "cls", "last"}
        - ``"flatten"``: keep everything, ``D = prod(shape[1:])``.
        - ``"mean"``: for conv maps ``[B, C, *spatial]`` (4-D or more) average the spatial
          dims, ``D = C``; for token sequences ``[B, T, D]`` (3-D) average over tokens.
        - ``"first"`` / ``"cls"``: the first token of ``[B, T, D]``; ``"last"``: the last token.

    Examples
    --------
    >>> import torch
    >>> pool(torch.ones(2, 3, 4, 4), "mean").shape
    torch.Size([2, 3])
    """
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
    if t.ndim <= 2 or pooling == "flatten":
        return t.reshape(t.shape[0], -1) if t.ndim != 1 else t.reshape(-1, 1)
    if pooling == "mean":
        if t.ndim == 3:
            return t.mean(dim=1)
        return t.mean(dim=tuple(range(2, t.ndim)))
    if t.ndim != 3:
        raise ValueError(f"pooling={pooling!r} needs a token sequence [B, T, D], got shape {tuple(t.shape)}")
    return t[:, 0] if pooling in ("first", "cls") else t[:, -1]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _model_float_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


_INPUT_KINDS = (
    "a Tensor, a numpy array, a mapping of keyword-argument names to Tensors/arrays (e.g. a tokenizer's output), "
    "a Dataset or a DataLoader"
)

ModelInput = torch.Tensor | dict[str, Any]
"""One batch as the model takes it: a tensor (``model(x)``) or keyword arguments (``model(**x)``)."""


def _as_input_tensor(x: Any, what: str = "inputs") -> torch.Tensor:
    """A Tensor or numeric ndarray as a Tensor; anything else is a ValueError naming what is allowed."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biufc":
            raise ValueError(f"{what} is a numpy array of dtype {x.dtype}; only numeric arrays can be model inputs")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be {_INPUT_KINDS}; got {type(x).__name__}")
    return x


def _as_kwargs(batch: Mapping, what: str, *, strict: bool) -> dict[str, Any]:
    """A mapping batch as keyword arguments: arrays become tensors; with ``strict`` every value must be one."""
    kwargs: dict[str, Any] = {}
    for k, v in batch.items():
        if not isinstance(k, str):
            raise ValueError(f"{what} is a mapping, so its keys must be keyword-argument names (str); got {k!r}")
        if isinstance(v, (torch.Tensor, np.ndarray)):
            v = _as_input_tensor(v, f"{what}[{k!r}]")
        elif strict:
            raise ValueError(
                f"{what}[{k!r}] is a {type(v).__name__}; every value of an input mapping must be a Tensor or numpy "
                "array with the samples along dim 0"
            )
        kwargs[k] = v
    if not any(isinstance(v, torch.Tensor) for v in kwargs.values()):
        raise ValueError(f"{what} is a mapping without any Tensor/array value, so it holds no samples")
    return kwargs


def _n_samples(x: ModelInput, what: str) -> int:
    """Batch size of a model input: dim 0 of the tensor, or the common dim 0 of a mapping's tensors."""
    if isinstance(x, torch.Tensor):
        if x.ndim == 0:
            raise ValueError(f"{what} is a 0-d tensor; the samples must be along dim 0")
        return int(x.shape[0])
    sizes = {k: (int(v.shape[0]) if v.ndim else None) for k, v in x.items() if isinstance(v, torch.Tensor)}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        detail = ", ".join(f"{k}: {'0-d' if n is None else n}" for k, n in sizes.items())
        raise ValueError(
            f"{what} is a mapping whose tensors must all hold the same number of samples along dim 0; got {detail}"
        )
    return next(iter(sizes.values()))


def _model_input(batch: Any) -> ModelInput:
    """The model input of one Dataset/DataLoader batch.

    A tensor is the input; a mapping is passed as keyword arguments (non-tensor values as they
    are); a tuple/list ``(x, y, ...)`` has its first element as the input (itself a tensor or mapping).
    """
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise ValueError("a DataLoader batch is an empty tuple/list, so it holds no model input")
        batch = batch[0]
    if isinstance(batch, Mapping):
        return _as_kwargs(batch, "a DataLoader batch", strict=False)
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return _as_input_tensor(batch)
    raise ValueError(
        "each Dataset item/DataLoader batch must be a Tensor, a mapping of keyword arguments (e.g. "
        "{'input_ids': ..., 'attention_mask': ...}), or a tuple/list (x, y, ...) whose first element is one of "
        f"those; got {type(batch).__name__} (raw text must be tokenized first)"
    )


def _slice_input(x: ModelInput, start: int, stop: int) -> ModelInput:
    if isinstance(x, torch.Tensor):
        return x[start:stop]
    return {k: v[start:stop] for k, v in x.items()}


def _to_device(x: ModelInput, device: torch.device, dtype: torch.dtype) -> ModelInput:
    """Move every tensor to ``device``; floating ones take the model's float dtype, integer ones keep theirs."""

    def move(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        if t.is_floating_point():
            t = t.to(dtype)
        return t.to(device, non_blocking=True)

    return move(x) if isinstance(x, torch.Tensor) else {k: move(v) for k, v in x.items()}


def _call_model(model: nn.Module, x: ModelInput) -> Any:
    return model(**x) if isinstance(x, dict) else model(x)


def iterate_batches(inputs: Any, batch_size: int) -> tuple[Iterator[ModelInput], int | None, int | None]:
    """Turn any supported input into an iterator of model inputs, one per batch.

    Parameters
    ----------
    inputs : Tensor, ndarray, mapping, Dataset or DataLoader
        - Tensor / ndarray ``[N, ...]``: split along dim 0.
        - Mapping of keyword-argument names to Tensors/arrays ``[N, ...]`` (e.g. a tokenizer's
          ``{"input_ids", "attention_mask"}``): every value is split along dim 0 and each batch is a
          dict, for ``model(**batch)``. All values must have the same N.
        - Dataset / DataLoader: each item/batch is a tensor, a mapping (keyword arguments), or a
          tuple/list ``(x, y, ...)`` whose first element is the model input.
    batch_size : int
        Samples per batch (a DataLoader keeps its own).

    Returns
    -------
    batches : iterator of Tensor or dict of str to Tensor
        A dict batch is meant for ``model(**batch)``.
    n_batches : int or None
        Number of batches if known.
    n_samples : int or None
        Number of samples if known.

    Raises
    ------
    ValueError
        An unsupported input kind, a mapping whose values disagree on N, or empty inputs.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(inputs, DataLoader):
        try:
            n_batches = len(inputs)
        except TypeError:
            n_batches = None
        return (_model_input(b) for b in inputs), n_batches, None
    if isinstance(inputs, Dataset):
        loader = DataLoader(inputs, batch_size=batch_size, shuffle=False)
        return iterate_batches(loader, batch_size)
    if isinstance(inputs, Mapping):
        x: ModelInput = _as_kwargs(inputs, "inputs", strict=True)
    elif isinstance(inputs, (tuple, list)):
        raise ValueError(
            f"inputs must be {_INPUT_KINDS}; got a {type(inputs).__name__}. For a model with several inputs pass "
            "a mapping of keyword arguments; for (x, y) pairs pass x, or a Dataset/DataLoader of pairs"
        )
    else:
        x = _as_input_tensor(inputs)
    n = _n_samples(x, "inputs")
    if n == 0:
        raise ValueError("inputs are empty (0 samples along dim 0); give at least one sample")
    return (_slice_input(x, s, s + batch_size) for s in range(0, n, batch_size)), -(-n // batch_size), n


def _update_with_tensor(h: Any, t: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape, device and exact bytes into the hash ``h``."""
    if torch.nn.parameter.is_lazy(t):
        h.update(b"lazy|")  # no values yet (a lazy module before its first forward)
        return
    t = t.detach()
    h.update(f"{t.dtype}|{tuple(t.shape)}|{t.device}|{t.layout}|".encode())
    if t.device.type == "meta":
        return
    if t.is_quantized:
        t = t.dequantize()
    elif t.layout != torch.strided:
        t = t.to_dense()
    t = t.resolve_conj().resolve_neg().contiguous().reshape(-1)
    if t.device.type != "cpu":
        t = t.cpu()
    h.update(memoryview(t.view(torch.uint8).numpy()))


class _Identity:
    """Key part for an object compared by identity; holds a reference, so its id cannot be reused."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj


def _data_key(inputs: Any) -> tuple:
    """Identity of the input data for the cache.

    Tensors and arrays: dtype, shape and a SHA-256 of their bytes; mappings: that per value;
    Datasets/DataLoaders and anything else: the object itself (by identity).
    """
    if isinstance(inputs, torch.Tensor) or (isinstance(inputs, np.ndarray) and inputs.dtype.kind in "biufc"):
        t = inputs if isinstance(inputs, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(inputs))
        h = hashlib.sha256()
        _update_with_tensor(h, t.cpu())
        return ("array", h.hexdigest())
    if isinstance(inputs, Mapping) and all(isinstance(k, str) for k in inputs):
        return ("mapping", tuple((k, _data_key(inputs[k])) for k in sorted(inputs)))
    return ("object", _Identity(inputs))


def model_fingerprint(model: nn.Module) -> str:
    """Exact fingerprint of a model's weights: SHA-256 over every parameter and buffer.

    Covers each tensor's name, dtype, shape, device and bytes, so any change of values (also
    through ``param.data = ...``, ``p.data.copy_``, ``vector_to_parameters`` or BatchNorm's running
    statistics), dtype or device gives a new fingerprint; two different weight sets never share one
    (up to SHA-256 collisions). Parameters are read once per call: about 40 ms for 10M float32
    parameters on one CPU core (GPU tensors are first copied to the host).

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> a = model_fingerprint(m)
    >>> m.weight.data = m.weight.data + 1
    >>> a == model_fingerprint(m)
    False
    """
    h = hashlib.sha256()
    for kind, named in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in named:
            h.update(f"{kind}:{name}|".encode())
            if t is None:
                continue
            _update_with_tensor(h, t)
    return h.hexdigest()


class Activations(Mapping):
    """Captured activations: ``acts[layer]`` is a float32 CPU tensor ``[N, D]``.

    Attributes
    ----------
    layers : list of str
        Layer names in capture order (the order they ran in the model).
    outputs : Tensor or None
        The model's own output ``[N, ...]`` (e.g. logits), float32 on the CPU.
    shapes : dict of str to tuple
        Each layer's unpooled output shape without the batch dimension.
    pooling : dict of str to str
        Pooling used per layer.

    Examples
    --------
    >>> import torch
    >>> from geowidgets import Probe
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    >>> acts = Probe(model, device="cpu").capture(torch.zeros(5, 4), progress=False)
    >>> acts.layers, tuple(acts["0"].shape)
    (['0', '1'], (5, 3))
    """

    def __init__(self, data: dict[str, torch.Tensor], outputs: torch.Tensor | None, shapes: dict, pooling: dict):
        self._data = data
        self.outputs = outputs
        self.shapes = shapes
        self.pooling = pooling

    @property
    def layers(self) -> list[str]:
        """Layer names in capture order."""
        return list(self._data)

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._data[name]
        except KeyError:
            raise KeyError(f"layer {name!r} was not captured; captured layers: {self.layers}") from None

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        n = next(iter(self._data.values())).shape[0] if self._data else 0
        dims = ", ".join(f"{k}: {tuple(v.shape[1:])}" for k, v in self._data.items())
        return f"Activations(N={n}, {{{dims}}})"


@contextmanager
def _eval_on(model: nn.Module, device: torch.device):
    """Put the model in eval mode on ``device``; restore mode and device afterwards."""
    was_training = model.training
    original = model_device(model)
    moved = original != device
    if moved:
        model.to(device)
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
        if moved:
            model.to(original)


class Probe:
    """Captures the activations of chosen layers of any ``nn.Module``.

    Each probed layer's output is recorded inside its forward hook, as a new tensor (pooled, or
    copied when pooling would give a view), before anything later in the forward pass runs. In-place
    operations after the layer (``ReLU(inplace=True)``, ``out += identity`` in a residual block,
    ``x.mul_(2)``) therefore leave the recorded values exactly as the layer produced them.

    Inputs may be tensors, arrays, mappings of keyword arguments (a tokenizer's output, passed as
    ``model(**batch)``), Datasets or DataLoaders (see :meth:`capture`). Results are cached per
    exact fingerprint of the weights (every parameter and buffer, see :func:`model_fingerprint`),
    data, layer and pooling, so any change of the weights gives a fresh forward pass.

    Parameters
    ----------
    model : nn.Module
        Any PyTorch model.
    layers : str or list of str, optional
        Names as in ``model.named_modules()``. None: every leaf module.
    device : str or torch.device
        ``"auto"`` uses the model's device if it is not the CPU, else cuda > mps > cpu.
        The model is moved there for a capture and moved back afterwards.
    pooling : str or dict of str to str
        How outputs with more than two dims become ``[N, D]`` (see :func:`pool`); a dict sets it
        per layer (missing layers: ``"flatten"``).
    select : int or str
        Element of a tuple/dict layer output to record (default the first; dict keys allowed).
    repeated : {"last", "first", "mean", "error"}
        What to record for a module that runs several times in one forward pass (a shared
        block): its last call (default), first call, the mean over calls (of the pooled outputs,
        which equals pooling the mean, every pooling being linear), or raise.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> probe = Probe(model, layers=["1"], device="cpu")
    >>> probe.capture(torch.randn(10, 4), progress=False)["1"].shape
    torch.Size([10, 8])
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | list[str] | None = None,
        device: str | torch.device = "auto",
        *,
        pooling: str | dict[str, str] = "flatten",
        select: int | str = 0,
        repeated: Literal["last", "first", "mean", "error"] = "last",
    ):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.layers = resolve_layers(model, layers)
        if device == "auto" and model_device(model).type != "cpu":
            self.device = model_device(model)
        else:
            self.device = resolve_device(device)
        poolings = pooling if isinstance(pooling, dict) else {name: pooling for name in self.layers}
        for name, p in poolings.items():
            if p not in _POOLINGS:
                raise ValueError(f"pooling for layer {name!r} must be one of {_POOLINGS}, got {p!r}")
        self.pooling = {name: poolings.get(name, "flatten") for name in self.layers}
        if repeated not in ("last", "first", "mean", "error"):
            raise ValueError(f"repeated must be 'last', 'first', 'mean' or 'error', got {repeated!r}")
        self.select = select
        self.repeated = repeated
        # key -> (activations [N, D] or model outputs, unpooled per-sample shape)
        self._cache: dict[tuple, tuple[torch.Tensor | None, tuple]] = {}
        self._cached_model: str | None = None

    def _model_key(self) -> tuple:
        """Cache key of the model's current state: the weights' fingerprint and the capture settings."""
        return (model_fingerprint(self.model), str(self.device), repr(self.select), self.repeated)

    def clear_cache(self) -> None:
        """Forget all cached activations."""
        self._cache.clear()

    def capture(self, inputs: Any, batch_size: int = 256, progress: bool = True) -> Activations:
        """Run the model over ``inputs`` and return the probed layers' activations.

        Each layer's output is copied (or pooled into a new tensor) inside its forward hook, so
        in-place operations later in the forward pass cannot alter it.

        Results are cached per (model weights, data, layer, pooling). The weights' key is an exact
        SHA-256 fingerprint of every parameter and buffer (names, dtypes, shapes, devices, bytes;
        see :func:`model_fingerprint`), taken at each call: any change of the weights, however it
        is made (an optimizer step, ``param.data = ...``, ``vector_to_parameters``,
        ``load_state_dict``, BatchNorm running statistics updated in train mode, ``.half()``),
        gives a fresh forward pass, and entries of earlier weights are dropped. Tensors, arrays and
        mappings of them are keyed by content; a Dataset or DataLoader by identity (the same
        object returns the cached result, so make a new one, or call :meth:`clear_cache`, after
        changing what it yields). State outside parameters and buffers (plain tensor attributes,
        the code) is not part of the key: call :meth:`clear_cache` after changing it.

        Parameters
        ----------
        inputs : Tensor, ndarray, mapping, Dataset or DataLoader
            The samples, along dim 0:

            - Tensor / numeric ndarray ``[N, ...]``: ``model(x)`` per batch. Floating inputs take
              the model's float dtype; integer inputs (token ids) keep theirs.
            - Mapping of keyword-argument names to Tensors/arrays ``[N, ...]`` (e.g. a tokenizer's
              ``{"input_ids", "attention_mask"}``): every value is batched along dim 0 and the model
              is called as ``model(**batch)``; all values must have the same N.
            - Dataset / DataLoader: each item/batch is a tensor (``model(x)``), a mapping
              (``model(**batch)``, non-tensor values passed as they are), or a tuple/list
              ``(x, y, ...)`` whose first element is the model input (a tensor or mapping).

            Every tensor of a batch is moved to the capture device.
        batch_size : int
            Samples per forward pass (ignored for a DataLoader).
        progress : bool
            Show a tqdm progress bar when there is more than one batch.

        Returns
        -------
        Activations

        Raises
        ------
        ValueError
            An input kind other than the above (the message lists what is allowed), a mapping whose
            values disagree on N, empty input, a layer that never ran, or NaN/inf in an activation.
        """
        data_key = _data_key(inputs)
        model_key = self._model_key()
        if model_key != self._cached_model:  # the old weights' activations can no longer be asked for
            self._cache.clear()
            self._cached_model = model_key
        key = lambda layer: (model_key, data_key, layer, self.pooling.get(layer))  # noqa: E731
        missing = [name for name in self.layers if key(name) not in self._cache]
        if missing or key(_OUTPUT) not in self._cache:
            captured, outputs = self._run(inputs, missing, batch_size, progress)
            for name, entry in captured.items():
                self._cache[key(name)] = entry
            self._cache[key(_OUTPUT)] = (outputs, ())
        data = {name: self._cache[key(name)][0] for name in self.layers}
        shapes = {name: self._cache[key(name)][1] for name in self.layers}
        return Activations(data, self._cache[key(_OUTPUT)][0], shapes, dict(self.pooling))

    def _run(self, inputs: Any, layers: list[str], batch_size: int, progress: bool):
        from tqdm.auto import tqdm

        modules = dict(self.model.named_modules())
        pieces: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        shapes: dict[str, tuple] = {}
        # per layer, during one forward pass: [calls, recorded [B, D] float32 (a sum for "mean"), shape]
        calls: dict[str, list] = {}
        handles = []

        def make_hook(name: str):
            pooling = self.pooling[name]

            def hook(_m, _inp, out):
                t = select_output(out, self.select)
                if t is None:
                    raise ValueError(
                        f"layer {name!r} returned {type(out).__name__} with no tensor at select={self.select!r}"
                    )
                rec = calls.get(name)
                if rec is not None:
                    rec[0] += 1
                    if self.repeated == "first":
                        return
                # Record now, as a tensor of its own: later in-place operations must not reach it.
                pooled = pool(t.detach(), pooling).float()
                if _shares_memory(pooled, t):
                    pooled = pooled.clone()
                shape = tuple(t.shape[1:])
                if rec is None:
                    calls[name] = [1, pooled, shape]
                elif self.repeated == "mean":
                    if shape != rec[2]:
                        raise ValueError(
                            f"layer {name!r} ran with output shapes {rec[2]} and {shape} in one forward pass; "
                            "repeated='mean' needs one shape, choose repeated='last' or 'first'"
                        )
                    rec[1] = rec[1] + pooled
                else:
                    rec[1], rec[2] = pooled, shape

            return hook

        batches, n_batches, _ = iterate_batches(inputs, batch_size)
        dtype = _model_float_dtype(self.model)
        outputs: list[torch.Tensor] | None = []
        n_seen = 0
        try:
            for name in layers:
                handles.append(modules[name].register_forward_hook(make_hook(name)))
            with _eval_on(self.model, self.device), torch.inference_mode():
                bar = tqdm(batches, total=n_batches, desc="capture", disable=not progress or (n_batches or 2) < 2)
                for batch in bar:
                    n = _n_samples(batch, "a batch")
                    batch = _to_device(batch, self.device, dtype)
                    calls.clear()
                    out = _call_model(self.model, batch)
                    out_t = select_output(out, 0)
                    if outputs is not None and out_t is not None and out_t.ndim >= 1 and out_t.shape[0] == n:
                        o = out_t.detach().float().reshape(n, -1)
                        outputs.append((o.clone() if _shares_memory(o, out_t) else o).cpu())
                    else:  # no per-sample output tensor (e.g. a scalar loss first): record none
                        outputs = None
                    for name in layers:
                        rec = calls.get(name)
                        if not rec:
                            raise ValueError(
                                f"layer {name!r} never ran during the forward pass, so it has no activations; "
                                "pick a layer that the model actually calls (see gw.list_layers)"
                            )
                        count, t, shape = rec
                        if count > 1 and self.repeated == "error":
                            raise ValueError(
                                f"layer {name!r} ran {count} times in one forward pass; "
                                "choose repeated='last', 'first' or 'mean'"
                            )
                        if self.repeated == "mean" and count > 1:
                            t = t / count
                        shapes[name] = shape
                        pieces[name].append(t.cpu())
                    n_seen += n
                    del out, batch
                    calls.clear()
        finally:
            for h in handles:
                h.remove()
        if n_seen == 0:
            raise ValueError("inputs are empty: the Dataset/DataLoader yielded no samples")
        result = {}
        for name in layers:
            t = torch.cat(pieces[name])
            if not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ValueError(f"layer {name!r} produced {bad} NaN/inf activation value(s)")
            result[name] = (t, shapes[name])
        return result, (torch.cat(outputs) if outputs else None)


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` is (a view of) the storage of ``b``."""
    if a.device != b.device:
        return False
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
