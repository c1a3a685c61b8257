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

__all__ = ["Probe", "Activations", "pool", "model_device", "iterate_batches", "Pooling"]

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


def _first(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        return next(iter(batch.values()))
    return batch


def _as_input_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"inputs must be a Tensor, ndarray, Dataset or DataLoader, got {type(x).__name__}")
    return x


def iterate_batches(inputs: Any, batch_size: int) -> tuple[Iterator[torch.Tensor], int | None, int | None]:
    """Turn any supported input into an iterator of batch tensors.

    Returns
    -------
    batches : iterator of Tensor
    n_batches : int or None
        Number of batches if known.
    n_samples : int or None
        Number of samples if known.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(inputs, DataLoader):
        try:
            n_batches = len(inputs)
        except TypeError:
            n_batches = None
        return (_as_input_tensor(_first(b)) for b in inputs), n_batches, None
    if isinstance(inputs, Dataset):
        loader = DataLoader(inputs, batch_size=batch_size, shuffle=False)
        return iterate_batches(loader, batch_size)
    x = _as_input_tensor(inputs)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"inputs are empty (shape {tuple(x.shape)}); give at least one sample")
    n = x.shape[0]
    return (x[s : s + batch_size] for s in range(0, n, batch_size)), -(-n // batch_size), n


def _data_key(inputs: Any) -> tuple:
    """Identity of the input data for the cache: a content hash for arrays, the object otherwise."""
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        arr = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else inputs
        h = hashlib.blake2b(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data, digest_size=16)
        return ("array", arr.shape, str(arr.dtype), h.hexdigest())
    return ("object", id(inputs))


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
        block): its last call (default), first call, the mean over calls, or raise.

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
        self._cache: dict[tuple, torch.Tensor] = {}
        self._shapes: dict[str, tuple] = {}

    def _model_key(self) -> tuple:
        return tuple(p._version for p in self.model.parameters())

    def clear_cache(self) -> None:
        """Forget all cached activations."""
        self._cache.clear()

    def capture(self, inputs: Any, batch_size: int = 256, progress: bool = True) -> Activations:
        """Run the model over ``inputs`` and return the probed layers' activations.

        Cached per (model weights, data, layer): calling again with the same data returns the
        cached tensors without a forward pass; changing the weights (training) invalidates.

        Parameters
        ----------
        inputs : Tensor, ndarray, Dataset or DataLoader
            The samples; for a Dataset/DataLoader the first element of each item/batch is the
            model input.
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
            Empty input, a layer that never ran, or NaN/inf in an activation.
        """
        data_key = _data_key(inputs)
        model_key = self._model_key()
        key = lambda layer: (model_key, data_key, layer, self.pooling.get(layer))  # noqa: E731
        missing = [name for name in self.layers if key(name) not in self._cache]
        if missing or key(_OUTPUT) not in self._cache:
            captured, outputs = self._run(inputs, missing, batch_size, progress)
            for name, t in captured.items():
                self._cache[key(name)] = t
            self._cache[key(_OUTPUT)] = outputs
        data = {name: self._cache[key(name)] for name in self.layers}
        return Activations(
            data, self._cache[key(_OUTPUT)], {n: self._shapes[n] for n in self.layers}, dict(self.pooling)
        )

    def _run(self, inputs: Any, layers: list[str], batch_size: int, progress: bool):
        from tqdm.auto import tqdm

        modules = dict(self.model.named_modules())
        pieces: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        calls: dict[str, list[torch.Tensor]] = {}
        handles = []

        def make_hook(name: str):
            def hook(_m, _inp, out):
                t = select_output(out, self.select)
                if t is None:
                    raise ValueError(
                        f"layer {name!r} returned {type(out).__name__} with no tensor at select={self.select!r}"
                    )
                calls.setdefault(name, []).append(t)

            return hook

        batches, n_batches, _ = iterate_batches(inputs, batch_size)
        dtype = _model_float_dtype(self.model)
        outputs: list[torch.Tensor] = []
        n_seen = 0
        try:
            for name in layers:
                handles.append(modules[name].register_forward_hook(make_hook(name)))
            with _eval_on(self.model, self.device), torch.inference_mode():
                bar = tqdm(batches, total=n_batches, desc="capture", disable=not progress or (n_batches or 2) < 2)
                for batch in bar:
                    if batch.is_floating_point():
                        batch = batch.to(dtype)
                    batch = batch.to(self.device, non_blocking=True)
                    calls.clear()
                    out = self.model(batch)
                    out_t = select_output(out, 0)
                    if out_t is not None:
                        outputs.append(out_t.detach().float().reshape(out_t.shape[0], -1).cpu())
                    for name in layers:
                        got = calls.get(name)
                        if not got:
                            raise ValueError(
                                f"layer {name!r} never ran during the forward pass, so it has no activations; "
                                "pick a layer that the model actually calls (see gw.list_layers)"
                            )
                        if len(got) > 1 and self.repeated == "error":
                            raise ValueError(
                                f"layer {name!r} ran {len(got)} times in one forward pass; "
                                "choose repeated='last', 'first' or 'mean'"
                            )
                        if self.repeated == "first":
                            t = got[0]
                        elif self.repeated == "mean" and len(got) > 1:
                            t = torch.stack([g.float() for g in got]).mean(0)
                        else:
                            t = got[-1]
                        self._shapes[name] = tuple(t.shape[1:])
                        pooled = pool(t.detach(), self.pooling[name]).float().cpu()
                        pieces[name].append(pooled)
                    n_seen += batch.shape[0]
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
            result[name] = t
        return result, (torch.cat(outputs) if outputs else None)
