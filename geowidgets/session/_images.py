"""Hover thumbnails: a session's images as uint8, or None when they are not images."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["image_thumbnails"]

_IMAGE_BYTES_LIMIT = 64 * 2**20


def image_thumbnails(images: Any, n: int) -> np.ndarray | None:
    """Images ``[N, H, W]`` (or ``[N, 1, H, W]`` / ``[N, H, W, 3]``) as uint8, or None if unusable.

    Values are scaled linearly from their min..max to 0..255; more than 256 MiB of float32
    pixels, a first dimension other than ``n`` or a shape that is not an image gives None.

    Examples
    --------
    >>> image_thumbnails(np.arange(8.0).reshape(2, 2, 2), 2)[1].tolist()
    [[146, 182], [219, 255]]
    """
    if images is None:
        return None
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 1, -1)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape[0] != n or arr.ndim not in (3, 4) or arr.nbytes > 4 * _IMAGE_BYTES_LIMIT:
        return None
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
