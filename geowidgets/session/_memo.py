"""The session's memo (a thread-safe LRU where concurrent callers of one key compute once) and model locks."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from torch import nn

__all__ = ["Memo", "model_lock"]

# One lock per model: a capture and a decision slice (which patches a layer with a forward hook)
# must never run the same model at the same time, even from two sessions or two threads.
_MODEL_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock every forward pass of ``model`` made by geowidgets holds.

    Examples
    --------
    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> model_lock(m) is model_lock(m)
    True
    """
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


class Memo:
    """A small thread-safe LRU memo where concurrent callers of the same key compute once.

    Parameters
    ----------
    maxsize : int, optional
        Entries kept (least recently used dropped first); None keeps every entry.

    Examples
    --------
    >>> memo = Memo(maxsize=2)
    >>> memo.get("a", lambda: 1), memo.get("a", lambda: 2), "a" in memo
    (1, 1, True)
    """

    def __init__(self, maxsize: int | None = None):
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        self._maxsize = maxsize

    def __contains__(self, key: Hashable) -> bool:
        with self._guard:
            return key in self._data

    def clear(self) -> None:
        """Drop every stored value (a computation under way still stores its own when it ends)."""
        with self._guard:
            self._data.clear()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The value stored under ``key``, computing (once) and storing ``compute()`` if absent."""
        with self._guard:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._data:
                    return self._data[key]
            value = compute()
            with self._guard:
                self._data[key] = value
                self._locks.pop(key, None)
                if self._maxsize is not None:
                    while len(self._data) > self._maxsize:
                        self._data.popitem(last=False)
            return value
