"""Small built-in data and models for demos, tutorials and tests.

Everything here is generated or ships with scikit-learn, and every model trains in a few
seconds on a CPU, seeded, so a notebook needs no download and gives the same pictures each run.

Examples
--------
>>> from geowidgets import datasets
>>> X, y = datasets.toy_data("moons", n=200)
>>> tuple(X.shape), int(y.max()) + 1
((200, 2), 2)
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = [
    "Demo",
    "ArithmeticDemo",
    "toy_data",
    "toy_model",
    "toy_demo",
    "digits_demo",
    "addition_demo",
    "train_classifier",
    "TOY_KINDS",
]

TOY_KINDS = ("moons", "spirals", "blobs", "circles")

from geowidgets._arithmetic import ArithmeticDemo, addition_demo  # noqa: E402  (re-exported)


@dataclass
class Demo:
    """A trained model together with the data it was trained and evaluated on.

    Attributes
    ----------
    model : nn.Module
        The trained classifier, in eval mode, on the CPU.
    inputs : torch.Tensor
        All samples (train and held-out), float32.
    labels : torch.Tensor
        Integer class of each sample, int64 ``[N]``.
    train_mask : torch.Tensor
        Bool ``[N]``: True for samples the model was trained on.
    class_names : list of str
        Display name of each class.
    layers : list of str
        Layers worth looking at (hidden representations and logits), in order.
    images : torch.Tensor or None
        ``[N, H, W]`` images for thumbnails (None for non-image data).
    name : str
        Short description.
    history : list of dict
        Per-epoch training record (``epoch``, ``loss``, ``train_accuracy``, ``test_accuracy``).
    """

    model: nn.Module
    inputs: torch.Tensor
    labels: torch.Tensor
    train_mask: torch.Tensor
    class_names: list[str]
    layers: list[str]
    images: torch.Tensor | None = None
    name: str = ""
    history: list[dict] = field(default_factory=list)

    @property
    def test_mask(self) -> torch.Tensor:
        """Bool ``[N]``: True for held-out samples."""
        return ~self.train_mask

    def accuracy(self, which: str = "test") -> float:
        """Accuracy of the model on the ``"train"``, ``"test"`` or ``"all"`` samples."""
        mask = {"train": self.train_mask, "test": self.test_mask, "all": torch.ones_like(self.train_mask)}[which]
        with torch.inference_mode():
            pred = self.model(self.inputs[mask]).argmax(1)
        return float((pred == self.labels[mask]).float().mean())

    def __repr__(self) -> str:
        return (
            f"Demo({self.name!r}, N={len(self.labels)}, classes={len(self.class_names)}, "
            f"test accuracy={self.accuracy():.3f}, layers={self.layers})"
        )


def toy_data(kind: str = "moons", n: int = 1000, noise: float | None = None, seed: int = 0):
    """Generate a 2-D toy classification set.

    Parameters
    ----------
    kind : {"moons", "spirals", "blobs", "circles"}
        ``moons``/``circles``: 2 classes; ``spirals``: 3 interleaved arms; ``blobs``: 4 Gaussians.
    n : int
        Number of samples (at least 10).
    noise : float, optional
        Standard deviation of the added Gaussian noise (a per-kind default if None).
    seed : int
        Random seed.

    Returns
    -------
    X : torch.Tensor, float32 [n, 2]
        Standardised coordinates.
    y : torch.Tensor, int64 [n]

    Examples
    --------
    >>> X, y = toy_data("spirals", n=300)
    >>> sorted(set(y.tolist()))
    [0, 1, 2]
    """
    from sklearn import datasets as skd

    if kind not in TOY_KINDS:
        raise ValueError(f"kind must be one of {TOY_KINDS}, got {kind!r}")
    if not isinstance(n, int) or n < 10:
        raise ValueError(f"n must be an integer >= 10, got {n!r}")
    rng = np.random.default_rng(seed)
    if kind == "moons":
        X, y = skd.make_moons(n, noise=0.15 if noise is None else noise, random_state=seed)
    elif kind == "circles":
        X, y = skd.make_circles(n, noise=0.08 if noise is None else noise, factor=0.5, random_state=seed)
    elif kind == "blobs":
        X, y = skd.make_blobs(n, centers=4, cluster_std=1.2 if noise is None else noise, random_state=seed)
    else:
        arms = 3
        y = np.arange(n) % arms
        t = rng.uniform(0.25, 1.0, n)
        angle = 3.5 * np.pi * t + 2 * np.pi * y / arms
        X = np.stack([t * np.cos(angle), t * np.sin(angle)], 1)
        X += rng.normal(scale=0.04 if noise is None else noise, size=X.shape)
    X = (X - X.mean(0)) / X.std(0)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def toy_model(n_classes: int = 2, hidden: int = 64, seed: int = 0) -> nn.Sequential:
    """An MLP ``2 -> hidden -> hidden -> n_classes`` with named layers fc1, relu1, fc2, relu2, fc3."""
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(2, hidden),
            relu1=nn.ReLU(),
            fc2=nn.Linear(hidden, hidden),
            relu2=nn.ReLU(),
            fc3=nn.Linear(hidden, n_classes),
        )
    )


class _DigitsCNN(nn.Sequential):
    """Small CNN for 8x8 digits: two convolutions, a pooling, two linear layers."""

    def __init__(self, n_classes: int = 10):
        super().__init__(
            OrderedDict(
                conv1=nn.Conv2d(1, 16, 3, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(16, 32, 3, padding=1),
                relu2=nn.ReLU(),
                pool=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(32 * 4 * 4, 64),
                relu3=nn.ReLU(),
                fc2=nn.Linear(64, n_classes),
            )
        )


def train_classifier(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    train_mask: torch.Tensor,
    *,
    epochs: int = 30,
    lr: float = 1e-2,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    on_epoch=None,
) -> list[dict]:
    """Train ``model`` with Adam and cross-entropy on ``X[train_mask]``; return the history.

    Training runs on one CPU thread (restored afterwards): faster for these small models on a
    shared host.

    Parameters
    ----------
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, model)`` after each epoch (e.g. to save checkpoints).
    """
    # Small models on a busy 2-core host (Binder, CI) train 2.5-7x faster on one thread: the
    # per-op cost of waking torch's thread pool dominates these tiny matrix products.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, X, y, train_mask, epochs, lr, batch_size, weight_decay, seed, on_epoch)
    finally:
        torch.set_num_threads(threads)


def _train(model, X, y, train_mask, epochs, lr, batch_size, weight_decay, seed, on_epoch) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    Xtr, ytr = X[train_mask], y[train_mask]
    Xte, yte = X[~train_mask], y[~train_mask]
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(Xtr), generator=g)
        total = 0.0
        for s in range(0, len(perm), batch_size):
            b = perm[s : s + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(Xtr[b]), ytr[b])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        model.eval()
        with torch.inference_mode():
            tr = float((model(Xtr).argmax(1) == ytr).float().mean())
            te = float((model(Xte).argmax(1) == yte).float().mean()) if len(Xte) else float("nan")
        history.append({"epoch": epoch, "loss": total / len(Xtr), "train_accuracy": tr, "test_accuracy": te})
        if on_epoch is not None:
            on_epoch(epoch, model)
    model.eval()
    return history


def _split(n: int, test_fraction: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    mask = np.ones(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(n * test_fraction))]] = False
    return torch.from_numpy(mask)


def toy_demo(kind: str = "moons", n: int = 1000, seed: int = 0, epochs: int = 40, hidden: int = 64) -> Demo:
    """Train :func:`toy_model` on :func:`toy_data` (70% train, 30% held out); about a second on a CPU.

    Examples
    --------
    >>> demo = toy_demo("moons", n=300, epochs=5)
    >>> demo.layers
    ['fc1', 'relu1', 'fc2', 'relu2', 'fc3']
    """
    X, y = toy_data(kind, n=n, seed=seed)
    n_classes = int(y.max()) + 1
    model = toy_model(n_classes, hidden=hidden, seed=seed)
    mask = _split(n, 0.3, seed)
    history = train_classifier(model, X, y, mask, epochs=epochs, lr=1e-2, batch_size=64, seed=seed)
    return Demo(
        model=model,
        inputs=X,
        labels=y,
        train_mask=mask,
        class_names=[f"class {c}" for c in range(n_classes)],
        layers=["fc1", "relu1", "fc2", "relu2", "fc3"],
        name=f"{kind} MLP",
        history=[dict(h) for h in history],
    )


def digits_demo(seed: int = 0, epochs: int = 12, test_fraction: float = 0.3) -> Demo:
    """A small CNN trained on scikit-learn's 8x8 handwritten digits (1797 images, 10 classes).

    Trains in a few seconds on a CPU and reaches about 97% held-out accuracy, leaving a few
    dozen misclassified samples to study.

    Examples
    --------
    >>> demo = digits_demo(epochs=1)
    >>> tuple(demo.inputs.shape), len(demo.class_names)
    ((1797, 1, 8, 8), 10)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)
    X = images.unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    mask = _split(len(y), test_fraction, seed)
    state, history = _trained_digits(seed, epochs, test_fraction)
    model = _DigitsCNN(10)
    model.load_state_dict(state)
    model.eval()
    return Demo(
        model=model,
        inputs=X,
        labels=y,
        train_mask=mask,
        class_names=[str(d) for d in range(10)],
        layers=["conv1", "relu2", "pool", "fc1", "relu3", "fc2"],
        images=images,
        name="digits CNN",
        history=[dict(h) for h in history],
    )


@functools.lru_cache(maxsize=4)
def _trained_digits(seed: int, epochs: int, test_fraction: float) -> tuple[dict, list[dict]]:
    """Train the digits CNN once per process and argument set; callers get fresh copies."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    torch.manual_seed(seed)
    model = _DigitsCNN(10)
    mask = _split(len(y), test_fraction, seed)
    history = train_classifier(model, X, y, mask, epochs=epochs, lr=3e-3, batch_size=64, seed=seed)
    return {k: v.clone() for k, v in model.state_dict().items()}, history
