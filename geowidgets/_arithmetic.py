"""A tiny transformer that adds multi-digit numbers step by step: a language model small enough for a CPU.

The model reads ``a+b=`` and writes the sum's digits least significant first, one token per
step (each step is one digit plus its carry, the "intermediate steps as tokens" of a
reasoning trace). It trains in well under a minute on one CPU thread and solves most problems
but not all, so the wrongly solved ones can be compared with the manifold of the correctly
solved ones, layer by layer and token by token.

Everything is generated: no download.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["ArithmeticDemo", "AdditionTransformer", "VOCAB", "addition_demo", "addition_problems"]

#: Token vocabulary: digits, then the operator, the equals sign and padding.
VOCAB: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "+", "=", "<pad>")
PLUS, EQUALS, PAD = 10, 11, 12


def addition_problems(n: int, n_digits: int = 3, seed: int = 0) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Random addition problems as token sequences.

    Each sequence is ``a`` (``n_digits`` digits, most significant first), ``+``, ``b``, ``=``,
    then the ``n_digits + 1`` digits of ``a + b`` least significant first.

    Parameters
    ----------
    n : int
        Number of problems.
    n_digits : int
        Digits of each operand.
    seed : int
        Random seed.

    Returns
    -------
    input_ids : torch.Tensor
        int64 ``[n, 3 * n_digits + 3]``.
    a, b : numpy.ndarray
        int64 ``[n]`` operands.

    Examples
    --------
    >>> ids, a, b = addition_problems(1, n_digits=2, seed=0)
    >>> "".join(VOCAB[t] for t in ids[0]) == f"{a[0]:02d}+{b[0]:02d}=" + str(a[0] + b[0]).zfill(3)[::-1]
    True
    """
    if n < 1 or n_digits < 1:
        raise ValueError(f"n and n_digits must be >= 1, got n={n}, n_digits={n_digits}")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 10**n_digits, size=n)
    b = rng.integers(0, 10**n_digits, size=n)
    rows = []
    for x, y in zip(a.tolist(), b.tolist()):
        answer = str(x + y).zfill(n_digits + 1)[::-1]
        text = f"{x:0{n_digits}d}+{y:0{n_digits}d}=" + answer
        rows.append([VOCAB.index(ch) for ch in text])
    return torch.tensor(rows, dtype=torch.int64), a, b


class AdditionTransformer(nn.Module):
    """A causal transformer language model: ``forward(input_ids, attention_mask=None)`` -> logits.

    Its blocks are named ``blocks.0`` ... so their outputs can be probed; each returns
    ``[N, L, d_model]``. The output is next-token logits ``[N, L, len(VOCAB)]``.

    Parameters
    ----------
    max_len : int
        Longest sequence.
    d_model, n_heads, n_layers, d_ff : int
        Width, attention heads, blocks and feed-forward width.
    """

    def __init__(self, max_len: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 3, d_ff: int = 128):
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, len(VOCAB))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device)
        h = self.embed(input_ids) + self.position(positions)
        causal = torch.triu(torch.full((length, length), -math.inf, device=input_ids.device), diagonal=1)
        padding = None
        if attention_mask is not None:  # additive, like the causal mask (torch wants one mask type)
            padding = torch.zeros(attention_mask.shape, device=input_ids.device).masked_fill(
                ~attention_mask.bool(), -math.inf
            )
        for block in self.blocks:
            h = block(h, src_mask=causal, src_key_padding_mask=padding, is_causal=True)
        return self.head(self.norm(h))


@dataclass
class ArithmeticDemo:
    """The trained adder with its problems and how it did on each.

    Attributes
    ----------
    model : AdditionTransformer
        In eval mode, on the CPU.
    input_ids : torch.Tensor
        int64 ``[N, L]`` token sequences (problem and the true answer).
    attention_mask : torch.Tensor
        int64 ``[N, L]`` (all ones: every sequence has the same length).
    texts : list of str
        Each sequence as text, e.g. ``"123+456=9750"`` (answer digits least significant first).
    correct : numpy.ndarray
        bool ``[N]``: the model writes every answer digit right (teacher-forced greedy decoding:
        with the true prefix every step's top token is the true digit, which is exactly when
        greedy decoding reproduces the whole answer).
    first_wrong_step : numpy.ndarray
        int64 ``[N]``: index of the first wrong answer digit (0 = units), -1 when correct.
    train_mask : numpy.ndarray
        bool ``[N]``: problems the model was trained on.
    answer_positions : list of int
        Sequence positions whose next-token prediction is an answer digit.
    layers : list of str
        Block outputs worth probing, in order.
    history : list of dict
        Per-epoch ``epoch``, ``loss`` and ``accuracy`` (share of problems solved, held out).
    """

    model: AdditionTransformer
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    texts: list[str]
    correct: np.ndarray
    first_wrong_step: np.ndarray
    train_mask: np.ndarray
    answer_positions: list[int]
    layers: list[str]
    history: list[dict] = field(default_factory=list)

    @property
    def inputs(self) -> dict[str, torch.Tensor]:
        """The batch as a tokenizer would give it: ``{"input_ids", "attention_mask"}``."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def __repr__(self) -> str:
        held_out = ~self.train_mask
        return (
            f"ArithmeticDemo(N={len(self.texts)}, solved={self.correct.mean():.3f} "
            f"(held out {self.correct[held_out].mean():.3f}), layers={self.layers})"
        )


def _solved(model: nn.Module, ids: torch.Tensor, answer_positions: list[int]) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        pred = model(ids)[:, answer_positions].argmax(-1)
    wrong = (pred != ids[:, [p + 1 for p in answer_positions]]).numpy()
    first = np.where(wrong.any(1), wrong.argmax(1), -1).astype(np.int64)
    return ~wrong.any(1), first


def addition_demo(
    n: int = 2000, n_digits: int = 3, epochs: int = 22, test_fraction: float = 0.3, seed: int = 0
) -> ArithmeticDemo:
    """Train :class:`AdditionTransformer` on ``n_digits``-digit addition; about 15-30 s on one CPU thread.

    The loss is next-token cross-entropy on the answer digits only. Trained once per process
    and argument set; each call gets its own copy of the model.

    Parameters
    ----------
    n : int
        Problems (train and held out).
    n_digits : int
        Digits of each operand.
    epochs : int
        Passes over the training problems.
    test_fraction : float
        Share of problems held out.
    seed : int
        Seed for the problems, the split and the initial weights.

    Returns
    -------
    ArithmeticDemo

    Examples
    --------
    >>> demo = addition_demo(n=200, n_digits=2, epochs=1)
    >>> tuple(demo.input_ids.shape), demo.layers
    ((200, 9), ['blocks.0', 'blocks.1', 'blocks.2'])
    """
    ids, _, _ = addition_problems(n, n_digits, seed)
    state, history, train_mask = _trained_adder(n, n_digits, epochs, test_fraction, seed)
    model = AdditionTransformer(ids.shape[1])
    model.load_state_dict(state)
    model.eval()
    answer_positions = list(range(2 * n_digits + 1, ids.shape[1] - 1))
    correct, first = _solved(model, ids, answer_positions)
    return ArithmeticDemo(
        model=model,
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        texts=["".join(VOCAB[t] for t in row) for row in ids.tolist()],
        correct=correct,
        first_wrong_step=first,
        train_mask=train_mask,
        answer_positions=answer_positions,
        layers=[f"blocks.{i}" for i in range(len(model.blocks))],
        history=history,
    )


@functools.lru_cache(maxsize=4)
def _trained_adder(
    n: int, n_digits: int, epochs: int, test_fraction: float, seed: int
) -> tuple[dict, list[dict], np.ndarray]:
    ids, _, _ = addition_problems(n, n_digits, seed)
    rng = np.random.default_rng(seed)
    train_mask = np.ones(n, dtype=bool)
    train_mask[rng.permutation(n)[: int(round(n * test_fraction))]] = False
    torch.manual_seed(seed)
    model = AdditionTransformer(ids.shape[1])
    answer_positions = list(range(2 * n_digits + 1, ids.shape[1] - 1))
    targets = ids[:, [p + 1 for p in answer_positions]]
    train = torch.from_numpy(np.flatnonzero(train_mask))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    steps_per_epoch = max(1, math.ceil(len(train) / 64))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    history = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a shared host
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            order = train[torch.randperm(len(train), generator=g)]
            total = 0.0
            for s in range(0, len(order), 64):
                b = order[s : s + 64]
                logits = model(ids[b])[:, answer_positions]
                loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[b].reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(b)
            model.eval()
            solved, _ = _solved(model, ids[~torch.from_numpy(train_mask)], answer_positions)
            history.append({"epoch": epoch, "loss": total / len(train), "accuracy": float(solved.mean())})
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return {k: v.clone() for k, v in model.state_dict().items()}, history, train_mask
