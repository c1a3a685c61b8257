"""Capturing layer activations with forward hooks, batched, cached, always cleaned up."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from geowidgets.probe._device import resolve_device
from geowidgets.probe._layers import every_module, module_mode, own_forward_hook, resolve_layers, select_output

__all__ = [
    "Probe",
    "Activations",
    "pool",
    "model_device",
    "model_fingerprint",
    "iterate_batches",
    "take_rows",
    "Pooling",
]

Pooling = Literal["flatten", "mean", "first", "cls", "last", "tokens"]
_POOLINGS = ("flatten", "mean", "first", "cls", "last")  # each gives one row per sample
_CAPTURE_POOLINGS = (*_POOLINGS, "tokens")  # "tokens": one row per real token
_MASKED_POOLINGS = ("mean", "first", "cls", "last")  # read the attention mask
_OUTPUT = "__output__"
_LABELS = "__labels__"
_TOKENS = "__tokens__"
# The file naming a store's layers, shapes and pooling (Probe.capture(..., store=path)).
_STORE_MANIFEST = "geowidgets-activations.json"
_MASK_KEY = "attention_mask"
_LABEL_KEYS = ("labels", "label")


def pool(t: torch.Tensor, pooling: str = "flatten", attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce a batch of layer outputs ``[B, ...]`` to ``[B, D]``.

    Parameters
    ----------
    t : Tensor
        Layer output with the batch first.
    pooling : {"flatten", "mean", "first", "cls", "last"}
        - ``"flatten"``: keep everything, ``D = prod(shape[1:])`` (padding positions included).
        - ``"mean"``: for conv maps ``[B, C, *spatial]`` (4-D or more) average the spatial
          dims, ``D = C``; for token sequences ``[B, L, D]`` (3-D) average over tokens.
        - ``"first"`` / ``"cls"``: the first token of ``[B, L, D]``; ``"last"``: the last token.
    attention_mask : Tensor, optional
        ``[B, L]``, 1 (or True) for real tokens and 0 for padding, as a tokenizer gives it. When
        ``t`` is ``[B, L, D]`` with the mask's ``B`` and ``L``, the token poolings read only real
        tokens: ``"mean"`` is the mean over the real tokens of each sample,
        ``"first"``/``"cls"`` the first real token and ``"last"`` the last real token (the last
        position where the mask is 1, so right and left padding both work). Any other shape
        (a pooled ``[B, D]`` head, a conv map, a 3-D output whose second dim is not ``L``) is
        pooled as without a mask, and so is ``"flatten"``.

    Returns
    -------
    Tensor
        ``[B, D]`` in the dtype of ``t``.

    Raises
    ------
    ValueError
        An unknown pooling, a token pooling of an output that is not ``[B, L, D]``, a mask that is
        not 2-D or not 0/1, or a masked token pooling of a sample without any real token.

    Examples
    --------
    >>> import torch
    >>> pool(torch.ones(2, 3, 4, 4), "mean").shape
    torch.Size([2, 3])
    >>> h = torch.arange(6.0).reshape(1, 3, 2)  # one sequence of 3 tokens, D = 2
    >>> pool(h, "last", attention_mask=torch.tensor([[1, 1, 0]]))  # the 3rd token is padding
    tensor([[2., 3.]])
    >>> pool(h, "mean", attention_mask=torch.tensor([[0, 1, 1]]))  # left padding
    tensor([[3., 4.]])
    """
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
    if attention_mask is not None:
        mask = _real_tokens(attention_mask)
        if pooling != "flatten" and t.ndim == 3 and tuple(t.shape[:2]) == tuple(mask.shape):
            return _masked_pool(t, mask.to(t.device), pooling)
    if t.ndim <= 2 or pooling == "flatten":
        return t.reshape(t.shape[0], -1) if t.ndim != 1 else t.reshape(-1, 1)
    if pooling == "mean":
        if t.ndim == 3:
            return t.mean(dim=1)
        return t.mean(dim=tuple(range(2, t.ndim)))
    if t.ndim != 3:
        raise ValueError(f"pooling={pooling!r} needs a token sequence [B, T, D], got shape {tuple(t.shape)}")
    return t[:, 0] if pooling in ("first", "cls") else t[:, -1]


def _real_tokens(attention_mask: Any, what: str = "attention_mask") -> torch.Tensor:
    """A 0/1 (or bool) mask ``[B, L]`` as a bool tensor, True at real tokens."""
    mask = _as_input_tensor(attention_mask, what)
    if mask.ndim != 2:
        raise ValueError(f"{what} must be 2-D [batch, sequence length], got shape {tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        return mask
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(
            f"{what} must hold 1 (or True) for real tokens and 0 for padding, as a tokenizer returns it; "
            "it holds other values (an additive mask of 0 and -inf must be turned into 0/1 first)"
        )
    return mask != 0


def _masked_pool(t: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``[B, L, D]`` over the real tokens of a bool ``mask [B, L]``: a new tensor ``[B, D]``."""
    counts = mask.sum(1)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        raise ValueError(
            f"attention_mask row(s) {empty.tolist()} have no real token (all 0), so pooling={pooling!r} "
            "has no token to read"
        )
    if pooling == "mean":  # where(), not a product: padding positions may hold NaN/inf
        total = torch.where(mask.unsqueeze(-1), t, torch.zeros((), dtype=t.dtype, device=t.device)).sum(1)
        return total / counts.unsqueeze(-1).to(total.dtype)
    length = t.shape[1]
    positions = torch.arange(length, device=t.device).expand_as(mask)
    if pooling == "last":
        index = torch.where(mask, positions, -1).amax(1)
    else:  # "first" / "cls"
        index = torch.where(mask, positions, length).amin(1)
    return t[torch.arange(t.shape[0], device=t.device), index]


def _token_rows(t: torch.Tensor, mask: torch.Tensor | None, name: str) -> torch.Tensor:
    """Every real token of ``[B, L, D]`` as a row, ``[n_real, D]`` in (sample, position) order."""
    if t.ndim != 3 or (mask is not None and tuple(t.shape[:2]) != tuple(mask.shape)):
        expected = "[B, L, D]" if mask is None else f"[{mask.shape[0]}, {mask.shape[1]}, D] (the attention mask's B, L)"
        raise ValueError(
            f"pooling='tokens' needs every captured layer to output a token sequence {expected}; layer {name!r} "
            f"gave shape {tuple(t.shape)}. Capture that layer in another call with pooling 'mean', 'last' or "
            "'flatten'"
        )
    return t.reshape(-1, t.shape[2]) if mask is None else t[mask]


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
    return cast(int, next(iter(sizes.values())))  # checked above: one common int


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


def _accepts_keyword(model: nn.Module, name: str) -> bool:
    """Whether ``model.forward`` takes a keyword argument ``name`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):  # no signature to read: pass everything, as given
        return True
    return any(
        p.kind == p.VAR_KEYWORD or (p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        for p in params
    )


def _forward_input(model: nn.Module, x: ModelInput) -> ModelInput:
    """``x`` as the model is called with it: a mapping batch without a ``labels``/``label`` entry
    that ``model.forward`` does not take (by name or through ``**kwargs``, as Hugging Face models do)."""
    if not isinstance(x, dict):
        return x
    unused = [k for k in _LABEL_KEYS if k in x and not _accepts_keyword(model, k)]
    return {k: v for k, v in x.items() if k not in unused}


def _call_model(model: nn.Module, x: ModelInput) -> Any:
    """``model(x)``, or ``model(**x)`` for a mapping batch (see :func:`_forward_input` for its labels)."""
    x = _forward_input(model, x)
    return model(**x) if isinstance(x, dict) else model(x)


def _batch_parts(batch: Any) -> tuple[ModelInput, Any]:
    """Model input and labels (None if there are none) of one Dataset/DataLoader batch.

    The labels are ``y`` of a tuple/list ``(x, y, ...)``, else a mapping input's ``labels`` (or
    ``label``) entry.
    """
    y = batch[1] if isinstance(batch, (tuple, list)) and len(batch) >= 2 else None
    x = _model_input(batch)
    if y is None and isinstance(x, dict):
        y = next((x[k] for k in _LABEL_KEYS if k in x), None)
    return x, y


def _loader_n_samples(loader: DataLoader) -> int | None:
    """Number of samples a DataLoader yields, when its sampler has a length and it batches by batch_size."""
    if loader.batch_size is None:  # a custom batch_sampler, or no automatic batching
        return None
    try:
        n = len(loader.sampler)  # type: ignore[arg-type]  # a sampler without __len__ raises TypeError
    except TypeError:  # an iterable-style dataset
        return None
    return (n // loader.batch_size) * loader.batch_size if loader.drop_last else n


def _batches(
    inputs: Any, batch_size: int, attention_mask: torch.Tensor | None = None
) -> tuple[Iterator[tuple[ModelInput, Any, Any]], int | None, int | None]:
    """Like :func:`iterate_batches`, but each batch is ``(model input, labels or None, attention mask or None)``.

    The mask is a mapping batch's ``attention_mask`` entry, else the slice of ``attention_mask``
    (given with Tensor/array inputs only).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(inputs, DataLoader):
        try:
            n_batches = len(inputs)
        except TypeError:
            n_batches = None

        def parts(batch: Any) -> tuple[ModelInput, Any, Any]:
            x, y = _batch_parts(batch)
            return x, y, x.get(_MASK_KEY) if isinstance(x, dict) else None

        return (parts(b) for b in inputs), n_batches, _loader_n_samples(inputs)
    if isinstance(inputs, Dataset):
        loader = DataLoader(inputs, batch_size=batch_size, shuffle=False)
        return _batches(loader, batch_size)
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
    if isinstance(x, dict):
        y = next((x[k] for k in _LABEL_KEYS if k in x), None)
        mask = x.get(_MASK_KEY)
    else:
        y, mask = None, attention_mask

    def part(v: Any, s: int) -> Any:
        return None if v is None else v[s : s + batch_size]

    batches = ((_slice_input(x, s, s + batch_size), part(y, s), part(mask, s)) for s in range(0, n, batch_size))
    return batches, -(-n // batch_size), n


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
        Number of samples if known: N of a Tensor, array or mapping, the length of a sized
        Dataset, and for a DataLoader the length of its sampler (less the dropped last batch with
        ``drop_last=True``); None for an iterable-style Dataset or a custom ``batch_sampler``.

    Raises
    ------
    ValueError
        An unsupported input kind, a mapping whose values disagree on N, or empty inputs.
    """
    batches, n_batches, n = _batches(inputs, batch_size)
    return (x for x, _, _ in batches), n_batches, n


def take_rows(inputs: Any, rows: Any, attention_mask: Any = None) -> tuple[Any, Any] | None:
    """The samples ``rows`` of ``inputs`` (and of a separate ``attention_mask``), in that order, or None.

    Used to capture a subsample (e.g. the landmarks of a first picture) with the same batching and
    pooling as the whole: a capture of ``take_rows(x, rows)[0]`` gives, row for row, the rows
    ``rows`` of the capture of ``x`` (the model runs in eval mode, so a sample's activations do not
    depend on its batch).

    Parameters
    ----------
    inputs : Tensor, ndarray, mapping, Dataset or DataLoader
        As for :meth:`Probe.capture`.
    rows : array-like of int ``[M]``
        Sample indices (positions in the order the inputs are captured).
    attention_mask : Tensor or ndarray ``[N, L]``, optional
        A mask given beside Tensor/array inputs; its rows are taken too.

    Returns
    -------
    (inputs, attention_mask) or None
        The subsample in the same kind as ``inputs`` (a Dataset or DataLoader becomes one over a
        ``torch.utils.data.Subset``); None when the rows cannot be addressed without running the
        whole input: an iterable-style Dataset, or a DataLoader whose sampler is not sequential
        (its order is not the dataset's) or that has a custom ``batch_sampler``.

    Examples
    --------
    >>> import torch
    >>> x, _ = take_rows(torch.arange(10.0).reshape(5, 2), [1, 3])
    >>> x.tolist()
    [[2.0, 3.0], [6.0, 7.0]]
    """
    from torch.utils.data import SequentialSampler, Subset

    idx = np.asarray(rows, dtype=np.int64)
    t = torch.as_tensor(idx)

    def take(v: Any) -> Any:
        return v[t] if isinstance(v, torch.Tensor) else np.asarray(v)[idx]

    mask = None if attention_mask is None else take(attention_mask)
    if isinstance(inputs, DataLoader):
        sequential = isinstance(inputs.sampler, SequentialSampler) and inputs.batch_size is not None
        if not sequential or isinstance(inputs.dataset, torch.utils.data.IterableDataset) or inputs.drop_last:
            return None
        subset = Subset(inputs.dataset, idx.tolist())
        return DataLoader(subset, batch_size=inputs.batch_size, collate_fn=inputs.collate_fn), mask
    if isinstance(inputs, Dataset):
        if isinstance(inputs, torch.utils.data.IterableDataset):
            return None
        return Subset(inputs, idx.tolist()), mask
    if isinstance(inputs, Mapping):
        return {k: take(v) for k, v in inputs.items()}, mask
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        return take(inputs), mask
    return None


def in_dataset_order(inputs: Any) -> Any:
    """``inputs``, with a shuffling DataLoader replaced by one that reads its dataset in order.

    A DataLoader with ``shuffle=True`` yields its samples in a new order on every pass, so
    per-sample values given beside it (labels, metadata, a reference mask) cannot be matched to
    its rows. Its replacement keeps the dataset, batch size, ``collate_fn`` and workers, reads the
    samples in dataset order and drops none (``drop_last`` would drop random ones). Other inputs,
    and loaders whose order cannot be recovered (a custom sampler or ``batch_sampler``), are
    returned as they are (see :func:`reads_in_order`).

    Examples
    --------
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> loader = DataLoader(TensorDataset(torch.arange(6.0)), batch_size=4, shuffle=True)
    >>> [b[0].tolist() for b in in_dataset_order(loader)]
    [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0]]
    """
    from torch.utils.data import RandomSampler

    if not (
        isinstance(inputs, DataLoader)
        and type(inputs.sampler) is RandomSampler
        and not inputs.sampler.replacement
        and inputs.sampler._num_samples is None  # every sample once, as shuffle=True does
        and inputs.batch_size is not None
        and not isinstance(inputs.dataset, torch.utils.data.IterableDataset)
    ):
        return inputs
    return DataLoader(
        inputs.dataset,
        batch_size=inputs.batch_size,
        shuffle=False,
        collate_fn=inputs.collate_fn,
        num_workers=inputs.num_workers,
        pin_memory=inputs.pin_memory,
        timeout=inputs.timeout,
        worker_init_fn=inputs.worker_init_fn,
        persistent_workers=inputs.persistent_workers,
    )


def reads_in_order(inputs: Any) -> bool:
    """False for a DataLoader whose rows do not come in its dataset's order (a non-sequential sampler or batch_sampler).

    Examples
    --------
    >>> from torch.utils.data import DataLoader
    >>> reads_in_order(DataLoader(range(5))), reads_in_order(DataLoader(range(5), shuffle=True))
    (True, False)
    """
    from torch.utils.data import BatchSampler, SequentialSampler

    if not isinstance(inputs, DataLoader) or isinstance(inputs.dataset, torch.utils.data.IterableDataset):
        return True
    batches = inputs.batch_sampler
    default_batches = batches is None or type(batches) is BatchSampler
    return isinstance(inputs.sampler, SequentialSampler) and default_batches


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
    h.update(t.view(torch.uint8).numpy().data)


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

    A row is a sample, or with ``pooling="tokens"`` a real token (see :attr:`tokens`).

    Attributes
    ----------
    layers : list of str
        Layer names in capture order (the order they ran in the model).
    outputs : Tensor or None
        The model's own output, one row per sample ``[N, ...]`` flattened to ``[N, prod(...)]``
        (e.g. logits), float32 on the CPU; also per sample in token mode (``[N, L * V]`` for
        next-token logits ``[N, L, V]``: ``outputs.reshape(N, L, V)[tokens.sample, tokens.position]``
        are the logits at each token row). None when the model's first output is not per sample, or
        when batches of a DataLoader give outputs of different widths (sequences padded per batch).
    output_shape : tuple or None
        The model output's shape per sample before it was flattened into :attr:`outputs`
        (e.g. ``(C,)`` for logits, ``(L, V)`` for next-token logits; the last batch's); None
        when :attr:`outputs` is None or unknown (a store written before it was recorded).
    shapes : dict of str to tuple
        Each layer's unpooled output shape without the batch dimension (the last batch's).
    pooling : dict of str to str
        Pooling used per layer.
    labels : Tensor or None
        ``[N]``, the labels that came with the inputs, in sample order: ``y`` of the ``(x, y)``
        pairs a Dataset/DataLoader yields, or the ``labels`` (else ``label``) entry of mapping inputs
        or batches, concatenated over batches with their own dtype. None when the inputs carry none,
        or when they are not one number per sample (e.g. token labels ``[N, L]`` of a language
        model, or strings).
    tokens : pandas.DataFrame or None
        With ``pooling="tokens"``: one row per activation row (the same for every layer of the
        capture), int64 columns ``sample`` (index of the sample in the inputs), ``position`` (index
        along the sequence dim of the padded input, so ``acts[layer][r]`` is the layer's output at
        ``[sample[r], position[r]]``) and ``token`` (rank among the sample's real tokens, 0 for the
        first: equals ``position`` with right padding, ``position`` minus the number of pads with
        left padding). None for the per-sample poolings.

    Examples
    --------
    >>> import torch
    >>> from geowidgets import Probe
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    >>> acts = Probe(model, device="cpu").capture(torch.zeros(5, 4), progress=False)
    >>> acts.layers, tuple(acts["0"].shape)
    (['0', '1'], (5, 3))

    Token mode on a padded batch: a row per real token, with its sample and position.

    >>> emb = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    >>> ids, mask = torch.tensor([[5, 6, 0], [7, 0, 0]]), torch.tensor([[1, 1, 0], [1, 0, 0]])
    >>> acts = Probe(emb, device="cpu").capture(ids, attention_mask=mask, pooling="tokens", progress=False)
    >>> tuple(acts["0"].shape), acts.tokens["sample"].tolist(), acts.tokens["position"].tolist()
    ((3, 4), [0, 0, 1], [0, 1, 0])
    """

    def __init__(
        self,
        data: dict[str, torch.Tensor],
        outputs: torch.Tensor | None,
        shapes: dict,
        pooling: dict,
        *,
        labels: torch.Tensor | None = None,
        tokens: Any = None,
        output_shape: tuple | None = None,
    ):
        self._data = data
        self.output_shape = output_shape
        self.outputs = outputs
        self.shapes = shapes
        self.pooling = pooling
        self.labels = labels
        self.tokens = tokens

    @classmethod
    def open(cls, store: str | os.PathLike) -> Activations:
        """Reopen activations written by ``Probe.capture(..., store=path)``, as memory-mapped tensors.

        Each layer is a float32 CPU tensor ``[N, D]`` over a copy-on-write memory map of its
        ``.npy`` file: nothing is read until used, and writes stay in memory (the files are not
        changed). ``outputs`` and ``labels`` are loaded if they were stored.

        Raises
        ------
        FileNotFoundError
            ``store`` holds no capture (no manifest).

        Examples
        --------
        >>> import tempfile, torch
        >>> from geowidgets import Probe
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
        >>> path = tempfile.mkdtemp()
        >>> acts = Probe(model, device="cpu").capture(torch.randn(5, 4), progress=False, store=path)
        >>> torch.equal(Activations.open(path)["1"], acts["1"])
        True
        """
        root = pathlib.Path(store)
        manifest_path = root / _STORE_MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no geowidgets capture in {root} (missing {_STORE_MANIFEST})")
        manifest = json.loads(manifest_path.read_text())
        data, shapes = {}, {}
        for entry in manifest["layers"]:
            data[entry["name"]] = torch.from_numpy(np.load(root / entry["file"], mmap_mode="c"))
            shapes[entry["name"]] = tuple(entry["shape"])

        def optional(name: str) -> torch.Tensor | None:
            path = root / name
            return torch.from_numpy(np.load(path)) if path.is_file() else None

        out_shape = manifest.get("output_shape")
        return cls(
            data,
            optional("outputs.npy"),
            shapes,
            dict(manifest["pooling"]),
            labels=optional("labels.npy"),
            output_shape=None if out_shape is None else tuple(out_shape),
        )

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
        rows = "N" if self.tokens is None else "tokens"
        return f"Activations({rows}={n}, {{{dims}}})"


@contextmanager
def _eval_on(model: nn.Module, device: torch.device):
    """Put the model in eval mode on ``device``; restore each module's own mode (:func:`module_mode`) and the device."""
    original = model_device(model)
    moved = original != device
    if moved:
        model.to(device)
    try:
        with module_mode(model, training=False):
            yield
    finally:
        if moved:
            model.to(original)


def _check_still_eval(model: nn.Module) -> None:
    """Raise if a module of ``model`` was switched to training mode while geowidgets ran it in eval mode."""
    switched_modules = [m for m in every_module(model) if m.training]  # (runs after every batch: names only if any)
    if switched_modules:
        names = {id(m): name or type(model).__name__ for name, m in model.named_modules()}
        switched = [names.get(id(m), type(m).__name__) for m in switched_modules]
        raise ValueError(
            f"the model was switched to training mode during the capture ({', '.join(switched[:3])}"
            f"{' …' if len(switched) > 3 else ''}: model.train() from another thread?); activations in training mode "
            "depend on the batch (BatchNorm, Dropout), so the capture stopped. Capture again once training is done"
        )


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

    Sequence models: a layer output ``[B, L, D]`` pools over the real tokens of the batch's
    attention mask (a mapping batch's ``attention_mask`` entry, or ``capture(...,
    attention_mask=...)`` for tensor inputs): ``"mean"`` averages the real tokens, ``"last"`` takes
    the last real token and ``"first"``/``"cls"`` the first (right or left padding). With
    ``pooling="tokens"`` every real token becomes a row of its own, indexed by
    :attr:`Activations.tokens`. Labels that come with the inputs (``(x, y)`` pairs of a
    Dataset/DataLoader, or a ``labels``/``label`` entry) are returned as :attr:`Activations.labels`.

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
        How outputs with more than two dims become rows: ``"flatten"``, ``"mean"``, ``"first"``,
        ``"cls"``, ``"last"`` (one row per sample, see :func:`pool`; the token poolings respect an
        attention mask) or ``"tokens"`` (one row per real token, for every layer of the capture; see
        :meth:`capture`). A dict sets it per layer (missing layers: ``"flatten"``).
    select : int or str
        Element of a tuple/dict layer output to record (default the first; dict keys allowed).
    repeated : {"last", "first", "mean", "error"}
        What to record for a module that runs several times in one forward pass (a shared
        block): its last call (default), first call, the mean over calls (of the pooled outputs,
        which equals pooling the mean, every pooling being linear), or raise.

    Raises
    ------
    ValueError
        A model that is not an ``nn.Module``, an unknown pooling or ``repeated``, or ``"tokens"``
        for some layers but not all.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> probe = Probe(model, layers=["1"], device="cpu")
    >>> probe.capture(torch.randn(10, 4), progress=False)["1"].shape
    torch.Size([10, 8])

    A language model on a padded batch: the mean over each sample's real tokens, then one row per
    real token.

    >>> from geowidgets._arithmetic import AdditionTransformer
    >>> lm = AdditionTransformer(max_len=6, d_model=8, n_heads=2, n_layers=2, d_ff=16)
    >>> batch = {"input_ids": torch.tensor([[1, 10, 2, 11], [3, 10, 4, 12]]),
    ...          "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    >>> probe = Probe(lm, layers=["blocks.0", "blocks.1"], device="cpu", pooling="mean")
    >>> probe.capture(batch, progress=False)["blocks.1"].shape
    torch.Size([2, 8])
    >>> acts = probe.capture(batch, pooling="tokens", progress=False)
    >>> acts["blocks.1"].shape, len(acts.tokens)  # 4 + 3 real tokens
    (torch.Size([7, 8]), 7)
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
        self.pooling = self._poolings(pooling)
        if repeated not in ("last", "first", "mean", "error"):
            raise ValueError(f"repeated must be 'last', 'first', 'mean' or 'error', got {repeated!r}")
        self.select = select
        self.repeated = repeated
        # key -> (activations [N, D], model outputs, labels or token index; unpooled per-sample shape)
        self._cache: dict[tuple, tuple[Any, tuple]] = {}
        self._cached_model: tuple | None = None

    def _poolings(self, pooling: str | dict[str, str]) -> dict[str, str]:
        """Pooling per probed layer, checked: known names, and ``"tokens"`` for all layers or none."""
        if not isinstance(pooling, (str, dict)):
            raise ValueError(f"pooling must be a str or a dict of layer name to str, got {type(pooling).__name__}")
        poolings = pooling if isinstance(pooling, dict) else {name: pooling for name in self.layers}
        for name, p in poolings.items():
            if p not in _CAPTURE_POOLINGS:
                raise ValueError(f"pooling for layer {name!r} must be one of {_CAPTURE_POOLINGS}, got {p!r}")
        result = {name: poolings.get(name, "flatten") for name in self.layers}
        tokens = [name for name, p in result.items() if p == "tokens"]
        if tokens and len(tokens) != len(result):
            others = [name for name in result if name not in tokens]
            raise ValueError(
                "pooling='tokens' gives one row per token and the other poolings one row per sample, so one "
                f"capture cannot mix them; layers {tokens} have 'tokens' and {others} do not. Capture them "
                "in separate calls (capture(..., pooling=...))"
            )
        return result

    def _model_key(self) -> tuple:
        """Cache key of the model's current state: the weights' fingerprint and the capture settings."""
        return (model_fingerprint(self.model), str(self.device), repr(self.select), self.repeated)

    def clear_cache(self) -> None:
        """Forget all cached activations."""
        self._cache.clear()

    def capture(
        self,
        inputs: Any,
        batch_size: int = 256,
        progress: bool | Callable[[int, int | None], None] = True,
        *,
        pooling: str | dict[str, str] | None = None,
        attention_mask: torch.Tensor | np.ndarray | None = None,
        store: str | os.PathLike | None = None,
    ) -> Activations:
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

        **Attention masks.** A batch's mask is its ``attention_mask`` entry (mapping inputs and
        mapping batches) or the matching rows of the ``attention_mask`` argument (Tensor/array
        inputs; it is used for pooling only, the model is still called as ``model(x)``). It holds 1
        (or True) for real tokens and 0 for padding. A layer output ``[B, L, D]`` with the mask's
        ``L`` then pools over real tokens only: ``"mean"`` is the mean of each sample's real tokens,
        ``"last"`` its last real token (the last position where the mask is 1: right and left
        padding), ``"first"``/``"cls"`` its first real token. Outputs of another shape (a pooled
        head ``[B, D]``, a conv map, a 3-D output whose second dim is not ``L``) and ``"flatten"``
        are pooled as without a mask. Without a mask the token poolings read every position.

        **Token mode** (``pooling="tokens"``): every real token (mask 1; every token without a
        mask) of every captured layer becomes a row, so ``acts[layer]`` is ``[n_tokens, D]`` with
        ``n_tokens = attention_mask.sum()``, rows ordered by sample then position, and
        :attr:`Activations.tokens` gives each row's ``sample``, ``position`` and ``token`` (the same
        for all layers of the capture). Every captured layer must output ``[B, L, D]`` with the
        mask's ``L`` (without a mask: one ``L`` shared by the layers); anything else is refused.
        Memory: ``n_tokens * D * 4`` bytes per layer, e.g. 10 000 sequences of 512 tokens at
        ``D = 4096`` take 84 GB per layer on the CPU, so capture few layers, or fewer or shorter
        sequences, in token mode.

        **Labels.** Labels that come with the inputs, ``y`` of ``(x, y)`` pairs of a
        Dataset/DataLoader, or a ``labels`` (else ``label``) entry of a mapping, are returned as
        :attr:`Activations.labels`. A ``labels``/``label`` entry is passed to the model only when
        its ``forward`` takes it (by name or ``**kwargs``, like Hugging Face models, which then
        also return a loss).

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
              ``(x, y, ...)`` whose first element is the model input (a tensor or mapping) and whose
              second is the labels.

            Every tensor of a batch is moved to the capture device.
        batch_size : int
            Samples per forward pass (ignored for a DataLoader).
        progress : bool or callable
            True: show a tqdm progress bar when there is more than one batch. A callable is called
            instead as ``progress(done_samples, total_samples)`` on the capturing thread: once
            with 0 before the first batch, then after each batch with the samples captured so
            far (non-decreasing, ending at N); ``total_samples`` is N, or None when the inputs do
            not tell it (an iterable-style Dataset, a custom ``batch_sampler``). It is not called
            when the result comes from the cache. For example
            ``progress=lambda done, total: print(f"{done}/{total}")``.
        pooling : str or dict of str to str, optional
            Pooling for this call instead of the probe's (same values as for :class:`Probe`,
            including ``"tokens"``).
        attention_mask : Tensor or ndarray, optional
            ``[N, L]`` 0/1 mask for Tensor/array ``inputs`` ``[N, L, ...]``. Mappings, Datasets and
            DataLoaders carry theirs as an ``attention_mask`` entry instead.
        store : str or path-like, optional
            A directory for activations too large for memory: each layer is written batch by batch
            to ``<store>/<i>.npy`` (a numpy ``.npy`` file, float32 ``[N, D]``), so the process
            never holds more than one batch of it, and the returned tensors are memory maps of
            those files (pages are read from disk on demand; writes to them stay in memory). The
            model's outputs and labels are stored beside them, and :meth:`Activations.open`
            reopens the store in another process. A store capture is not cached (the files are
            the cache). Needs inputs of known length and a per-sample pooling (not ``"tokens"``).

        Returns
        -------
        Activations
            With ``labels`` (or None) and, in token mode, ``tokens``.

        Raises
        ------
        ValueError
            An input kind other than the above (the message lists what is allowed), a mapping whose
            values disagree on N, empty input, a layer that never ran, or NaN/inf in an activation;
            an ``attention_mask`` argument with inputs other than a Tensor/array, of another N, not
            2-D or not 0/1; a masked ``"mean"``/``"first"``/``"last"`` of a sample without any real
            token; in token mode, a captured layer that is not ``[B, L, D]`` with the mask's ``L``.

        Examples
        --------
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        >>> pairs = TensorDataset(torch.randn(10, 3), torch.arange(10) % 2)  # (x, y) pairs
        >>> acts = Probe(model, layers=["1"], device="cpu").capture(DataLoader(pairs, batch_size=4), progress=False)
        >>> acts["1"].shape, acts.labels.tolist()
        (torch.Size([10, 4]), [0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
        """
        poolings = self.pooling if pooling is None else self._poolings(pooling)
        token_mode = any(p == "tokens" for p in poolings.values())
        if store is not None and token_mode:
            raise ValueError("store= writes one row per sample; pooling='tokens' is not supported with a store")
        if attention_mask is not None:
            if not isinstance(inputs, (torch.Tensor, np.ndarray)):
                raise ValueError(
                    "attention_mask= goes with Tensor/array inputs; a mapping, Dataset or DataLoader carries its "
                    f"own mask as an {_MASK_KEY!r} entry (got inputs of type {type(inputs).__name__})"
                )
            mask = _as_input_tensor(attention_mask, "attention_mask")
            if mask.ndim != 2 or inputs.ndim < 2 or mask.shape[0] != inputs.shape[0]:
                raise ValueError(
                    f"attention_mask must be [N, L] with the inputs' N = {inputs.shape[0]}, got shape "
                    f"{tuple(mask.shape)}"
                )
            attention_mask = mask
        if store is not None:
            return self._capture_to_store(inputs, store, batch_size, progress, poolings, attention_mask)
        data_key = (_data_key(inputs), None if attention_mask is None else _data_key(attention_mask))
        model_key = self._model_key()
        if model_key != self._cached_model:  # the old weights' activations can no longer be asked for
            self._cache.clear()
            self._cached_model = model_key
        key = lambda layer: (model_key, data_key, layer, poolings.get(layer))  # noqa: E731
        extras = [_OUTPUT, _LABELS] + ([_TOKENS] if token_mode else [])
        missing = [name for name in self.layers if key(name) not in self._cache]
        if any(key(extra) not in self._cache for extra in extras):
            missing = list(self.layers)  # the token index comes from the same pass as the rows
        if missing:
            run = self._run(inputs, missing, batch_size, progress, poolings, attention_mask)
            captured, (outputs, output_shape), labels, tokens = run
            for name, entry in captured.items():
                self._cache[key(name)] = entry
            self._cache[key(_OUTPUT)] = (outputs, output_shape)
            self._cache[key(_LABELS)] = (labels, ())
            if token_mode:
                self._cache[key(_TOKENS)] = (tokens, ())
        data = {name: self._cache[key(name)][0] for name in self.layers}
        shapes = {name: self._cache[key(name)][1] for name in self.layers}
        token_frame = None
        if token_mode:
            import pandas as pd

            token_frame = pd.DataFrame({k: v.copy() for k, v in self._cache[key(_TOKENS)][0].items()})
        return Activations(
            data,
            self._cache[key(_OUTPUT)][0],
            shapes,
            dict(poolings),
            labels=self._cache[key(_LABELS)][0],
            tokens=token_frame,
            output_shape=self._cache[key(_OUTPUT)][1] if self._cache[key(_OUTPUT)][0] is not None else None,
        )

    def _capture_to_store(
        self,
        inputs: Any,
        store: str | os.PathLike,
        batch_size: int,
        progress: bool | Callable[[int, int | None], None],
        poolings: dict[str, str],
        attention_mask: torch.Tensor | None,
    ) -> Activations:
        """:meth:`capture` into ``.npy`` files under ``store``, one batch at a time (see ``store=``)."""
        from numpy.lib.format import open_memmap

        _, _, n = iterate_batches(inputs, batch_size)
        if n is None:
            raise ValueError(
                "store= needs to know the number of samples up front (a Tensor, array, mapping, sized Dataset or "
                "DataLoader over one)"
            )
        root = pathlib.Path(store)
        root.mkdir(parents=True, exist_ok=True)
        files = {name: root / f"{i}.npy" for i, name in enumerate(self.layers)}
        arrays: dict[str, np.memmap] = {}

        def sink(name: str, rows: torch.Tensor, offset: int) -> None:
            if not bool(torch.isfinite(rows).all()):
                bad = int((~torch.isfinite(rows)).sum())
                raise ValueError(f"layer {name!r} produced {bad} NaN/inf activation value(s)")
            if name not in arrays:
                arrays[name] = open_memmap(files[name], mode="w+", dtype=np.float32, shape=(n, rows.shape[1]))
            arrays[name][offset : offset + rows.shape[0]] = rows.numpy()

        captured, (outputs, output_shape), labels, _ = self._run(
            inputs, list(self.layers), batch_size, progress, poolings, attention_mask, sink
        )
        for arr in arrays.values():
            arr.flush()
        arrays.clear()
        if outputs is not None:
            np.save(root / "outputs.npy", outputs.numpy())
        if labels is not None:
            np.save(root / "labels.npy", labels.numpy())
        manifest = {
            "layers": [
                {"name": name, "file": files[name].name, "shape": list(captured[name][1])} for name in self.layers
            ],
            "pooling": {name: poolings[name] for name in self.layers},
            "n": n,
            "output_shape": None if outputs is None else list(output_shape),
        }
        (root / _STORE_MANIFEST).write_text(json.dumps(manifest, indent=1))
        return Activations.open(root)

    def _run(
        self,
        inputs: Any,
        layers: list[str],
        batch_size: int,
        progress: bool | Callable[[int, int | None], None],
        poolings: dict[str, str],
        attention_mask: torch.Tensor | None,
        sink: Callable[[str, torch.Tensor, int], None] | None = None,
    ):
        """One pass over the inputs; with ``sink``, each batch's rows go to ``sink(layer, rows, offset)``.

        Without ``sink``, each layer's rows (and the model's outputs) are gathered by :class:`_Rows`:
        when the number of samples is known up front (and not in token mode), every batch is copied
        into one preallocated ``[N, D]`` tensor, so a layer takes O(N·D) memory in all and never a
        second copy; otherwise the batches are concatenated once the pass ends. NaN/inf are checked
        batch by batch (O(batch·D) scratch) and reported for the whole layer after the pass.
        """
        from tqdm.auto import tqdm

        modules = dict(self.model.named_modules())
        # The number of rows, when known before the pass: one per sample (token mode: unknown).
        token_mode = any(poolings[name] == "tokens" for name in layers)
        batches, n_batches, n_total = _batches(inputs, batch_size, attention_mask)
        n_rows = None if token_mode else n_total
        rows: dict[str, _Rows] = {name: _Rows(n_rows) for name in layers}
        non_finite: dict[str, int] = {name: 0 for name in layers}
        shapes: dict[str, tuple] = {}
        # per layer, during one forward pass: [calls, recorded [B, D] float32 (a sum for "mean"), shape]
        calls: dict[str, list] = {}
        current: dict[str, torch.Tensor | None] = {"mask": None}  # the batch's bool mask, on the device
        handles = []
        masked = any(poolings[name] in _MASKED_POOLINGS for name in layers)

        def make_hook(name: str):
            pooling = poolings[name]

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
                if pooling == "tokens":
                    pooled = _token_rows(t.detach(), current["mask"], name).float()
                else:
                    pooled = pool(t.detach(), pooling, current["mask"]).float()
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

        report = progress if callable(progress) else None
        dtype = _model_float_dtype(self.model)
        outputs: _Rows | None = _Rows(n_total)
        output_shape: tuple = ()  # the model output's shape per sample (the last batch's)
        labels: list[torch.Tensor] | None = []
        token_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        n_seen = 0
        try:
            for name in layers:
                # Only this thread's forward passes are recorded: the user may run the model meanwhile.
                handles.append(own_forward_hook(modules[name], make_hook(name)))
            with _eval_on(self.model, self.device), torch.inference_mode():
                bar = tqdm(
                    batches,
                    total=n_batches,
                    desc="capture",
                    disable=report is not None or not progress or (n_batches or 2) < 2,
                )
                if report is not None:
                    report(0, n_total)
                for batch, y, mask in bar:
                    n = _n_samples(batch, "a batch")
                    if mask is not None and (masked or token_mode):  # else the mask is the model's business
                        mask = _batch_mask(mask, n, n_seen, check_empty=masked)
                    else:
                        mask = None
                    labels = _append_labels(labels, y, n)
                    batch = _to_device(batch, self.device, dtype)
                    current["mask"] = None if mask is None else mask.to(self.device)
                    calls.clear()
                    out = _call_model(self.model, batch)
                    _check_still_eval(self.model)
                    out_t = select_output(out, 0)
                    if outputs is not None and out_t is not None and out_t.ndim >= 1 and out_t.shape[0] == n:
                        # Copied into outputs' own rows (or cloned), never kept as a view of out_t.
                        o = out_t.detach().float().reshape(n, -1)
                        outputs.add(o, copy=_shares_memory(o, out_t))
                        output_shape = tuple(out_t.shape[1:])
                    else:  # no per-sample output tensor (e.g. a scalar loss first): record none
                        outputs = None
                    for name in layers:
                        rec = calls.get(name)
                        if not rec:
                            parallel = any(isinstance(m, nn.DataParallel) for m in self.model.modules())
                            raise ValueError(
                                f"layer {name!r} never ran during the forward pass, so it has no activations; "
                                + (
                                    "the model is wrapped in nn.DataParallel, whose replicas run on other threads: "
                                    "pass model.module instead"
                                    if parallel
                                    else "pick a layer that the model actually calls (see gw.list_layers)"
                                )
                            )
                        count, t, shape = rec
                        if count > 1 and self.repeated == "error":
                            raise ValueError(
                                f"layer {name!r} ran {count} times in one forward pass; "
                                "choose repeated='last', 'first' or 'mean'"
                            )
                        if self.repeated == "mean" and count > 1:
                            t = t / count
                        if not token_mode and t.shape[0] != n:
                            raise ValueError(
                                f"layer {name!r} gave {t.shape[0]} rows for a batch of {n} samples: geowidgets "
                                "reads one row per sample from a layer whose output has the batch first. "
                                "Sequence-first layers (an RNN or "
                                "Transformer layer with batch_first=False) and layers that merge or split the batch "
                                "cannot be captured; pick another layer, or build the model with batch_first=True"
                            )
                        shapes[name] = shape
                        if sink is None:
                            kept = rows[name].add(t)
                            if not bool(torch.isfinite(kept).all()):
                                non_finite[name] += int((~torch.isfinite(kept)).sum())
                        else:
                            sink(name, t.cpu(), n_seen)
                    if token_mode:
                        token_parts.append(_token_index(mask, {name: shapes[name] for name in layers}, n, n_seen))
                    n_seen += n
                    if report is not None:
                        report(n_seen, n_total)
                    del out, batch
                    calls.clear()
                    current["mask"] = None
        finally:
            for h in handles:
                h.remove()
        if n_seen == 0:
            raise ValueError("inputs are empty: the Dataset/DataLoader yielded no samples")
        for name in layers:
            if non_finite[name]:
                raise ValueError(f"layer {name!r} produced {non_finite[name]} NaN/inf activation value(s)")
        result: dict[str, tuple[torch.Tensor | None, tuple]] = {}
        for name in layers:
            # Each layer's pieces (when not preallocated) are freed as soon as they are concatenated.
            result[name] = (None if sink is not None else rows.pop(name).take(), shapes[name])
        tokens = None
        if token_mode:
            tokens = {}
            for i, column in enumerate(("sample", "position", "token")):
                arr = torch.cat([part[i] for part in token_parts]).numpy()
                arr.flags.writeable = False
                tokens[column] = arr
        out_rows = None if outputs is None else outputs.take(same_shape=True)
        return result, (out_rows, output_shape if out_rows is not None else ()), _cat_rows(labels), tokens


def _batch_mask(mask: Any, n: int, offset: int, *, check_empty: bool) -> torch.Tensor:
    """One batch's attention mask as a bool CPU tensor ``[n, L]``, checked."""
    mask = _real_tokens(mask, "the attention mask").cpu()
    if mask.shape[0] != n:
        raise ValueError(f"a batch holds {n} samples but its attention mask {mask.shape[0]} rows")
    if check_empty:
        empty = torch.nonzero(~mask.any(1)).flatten()
        if empty.numel():
            raise ValueError(
                f"sample(s) {(empty + offset).tolist()} have no real token (attention mask all 0), so the "
                "'mean'/'first'/'last' poolings have no token to read"
            )
    return mask


def _append_labels(labels: list[torch.Tensor] | None, y: Any, n: int) -> list[torch.Tensor] | None:
    """Add one batch's labels ``[n]``; None (for the whole capture) when they are not one number per sample."""
    if labels is None or y is None:
        return None
    if isinstance(y, np.ndarray) and y.dtype.kind in "biuf":
        y = torch.from_numpy(np.ascontiguousarray(y))
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.shape[0] != n or y.is_complex():
        return None
    labels.append(y.detach().cpu().clone())
    return labels


class _Rows:
    """Per-sample rows ``[n, ...]`` of one layer (or of the model's outputs), gathered batch by batch on the CPU.

    With the number of rows known up front, the first batch allocates the whole ``[n_rows, ...]``
    tensor and every batch is copied into its place: O(n_rows · D) memory in all, and no second
    copy. Without it, or once a batch does not fit (another row shape or dtype, more rows than
    announced), the batches are kept as pieces and concatenated by :meth:`take` (twice the rows
    for the moment of the concatenation). Either way the result is the rows in batch order.
    """

    def __init__(self, n_rows: int | None):
        self.n_rows = n_rows
        self.buffer: torch.Tensor | None = None
        self.filled = 0
        self.pieces: list[torch.Tensor] = []

    def add(self, t: torch.Tensor, *, copy: bool = False) -> torch.Tensor:
        """Keep the batch ``t`` (any device); ``copy``: ``t`` is a view that must not be kept as it is.

        Returns the CPU rows as kept (a view of the buffer, or the piece).
        """
        n = int(t.shape[0])
        if self.n_rows is not None and not self.pieces:
            if self.buffer is None and n <= self.n_rows:
                self.buffer = torch.empty((self.n_rows, *t.shape[1:]), dtype=t.dtype)
            buffer = self.buffer
            if (
                buffer is not None
                and tuple(t.shape[1:]) == tuple(buffer.shape[1:])
                and t.dtype == buffer.dtype
                and self.filled + n <= self.n_rows
            ):
                kept = buffer[self.filled : self.filled + n]
                kept.copy_(t)
                self.filled += n
                return kept
            if buffer is not None:  # this batch does not fit: carry on as pieces
                self.pieces.append(buffer[: self.filled])
                self.buffer = None
        piece = t.cpu()
        if copy and _shares_memory(piece, t):
            piece = piece.clone()
        self.pieces.append(piece)
        return piece

    def take(self, *, same_shape: bool = False) -> torch.Tensor | None:
        """All rows as one tensor; None for no rows, or (``same_shape``) when the batches' rows disagree in shape.

        Without ``same_shape``, batches that disagree raise torch's error, as ``torch.cat`` does.
        """
        buffer, pieces = self.buffer, self.pieces
        self.buffer, self.pieces = None, []
        if buffer is not None:
            return buffer if self.filled == buffer.shape[0] else buffer[: self.filled].clone()
        if same_shape:
            return _cat_rows(pieces)
        return torch.cat(pieces) if pieces else None


def _cat_rows(parts: list[torch.Tensor] | None) -> torch.Tensor | None:
    """Concatenate per-batch rows; None for none, or when the batches disagree on the row's shape or dtype."""
    if not parts or len({(tuple(p.shape[1:]), p.dtype) for p in parts}) != 1:
        return None
    return torch.cat(parts)


def _token_index(
    mask: torch.Tensor | None, shapes: dict[str, tuple], n: int, offset: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample index, position and rank among real tokens of each token row of one batch (int64)."""
    if mask is None:  # every token: the layers must agree on L
        lengths = {name: shape[0] for name, shape in shapes.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                "pooling='tokens' without an attention mask needs all captured layers to share one sequence "
                f"length L, so that their rows are the same tokens; got L per layer {lengths}"
            )
        mask = torch.ones(n, next(iter(lengths.values())), dtype=torch.bool)
    sample, position = torch.nonzero(mask, as_tuple=True)  # row-major: the order of t[mask]
    token = (mask.long().cumsum(1) - 1)[mask]
    return sample + offset, position, token


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` is (a view of) the storage of ``b``."""
    if a.device != b.device:
        return False
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
