"""The one binary codec between the kernel and the browser: typed numpy arrays as array traits.

An array trait holds a numpy array (or None) of one dtype and a declared shape. It travels to the
browser as ``{"dtype": "float32", "shape": [N, 2], "buffer": <memoryview>}``: the buffer is the
array's little-endian, C-contiguous bytes, sent as a binary message part (never as JSON lists),
and its dtype and shape travel with it, so no separate size trait has to be kept in step. In the
browser, ``decodeArray`` (``js/codecs.js``) turns that value back into ``{dtype, shape, data}``
with ``data`` a typed array viewing the buffer.

Examples
--------
>>> import numpy as np
>>> import traitlets
>>> class Points(traitlets.HasTraits):
...     xy = array_trait("float32", "[N, 2]", "Point positions, float32 [N, 2], in [-1, 1].")
>>> p = Points()
>>> p.set_trait("xy", np.zeros((3, 2), np.float32))
>>> p.xy.shape
(3, 2)
>>> encode_array(p.xy, None)["shape"]
[3, 2]
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import traitlets

__all__ = ["DTYPES", "Array", "array_trait", "decode_array", "encode_array", "parse_shape"]

#: dtypes an array trait may hold: those with a JavaScript typed array of the same layout.
DTYPES = ("float32", "float64", "int8", "int16", "int32", "uint8", "uint16", "uint32")

_DIM = re.compile(r"^(?:\d+|[A-Za-z_]\w*)$")


def parse_shape(shape: str) -> list[tuple[int | str, ...]]:
    """The allowed shapes of a shape declaration such as ``"[N, 2]"`` or ``"[N, H, W] or [N, H, W, 3]"``.

    Each dimension is a fixed size (an integer) or a symbol (a name); a symbol used twice in one
    shape must have the same size both times (``"[G, G]"`` is a square).

    Parameters
    ----------
    shape : str
        One or more bracketed, comma-separated dimension lists joined by ``" or "``.

    Returns
    -------
    list of tuple
        One tuple of dimensions (int or str) per alternative.

    Raises
    ------
    ValueError
        If the declaration is malformed.

    Examples
    --------
    >>> parse_shape("[N, 2]")
    [('N', 2)]
    >>> parse_shape("[N, H, W] or [N, H, W, 3]")
    [('N', 'H', 'W'), ('N', 'H', 'W', 3)]
    """
    alternatives = []
    for part in shape.split(" or "):
        part = part.strip()
        if not (part.startswith("[") and part.endswith("]")):
            raise ValueError(f"shape must look like '[N, 2]' (alternatives joined by ' or '), got {shape!r}")
        inner = part[1:-1].strip()
        tokens = [t.strip() for t in inner.split(",")] if inner else []
        if not all(_DIM.match(t) for t in tokens):
            raise ValueError(f"each dimension must be an integer or a name, got {shape!r}")
        alternatives.append(tuple(int(t) if t.isdigit() else t for t in tokens))
    return alternatives


def _matches(shape: tuple[int, ...], dims: tuple[int | str, ...]) -> bool:
    if len(shape) != len(dims):
        return False
    sizes: dict[str, int] = {}
    for size, dim in zip(shape, dims):
        if isinstance(dim, int):
            if size != dim:
                return False
        elif sizes.setdefault(dim, size) != size:
            return False
    return True


class Array(traitlets.TraitType):
    """A trait holding a numpy array of a fixed dtype and a declared shape, or None.

    Assigned values are checked, never cast: the dtype must be ``dtype`` (any byte order) and the
    shape one of those declared. The stored array is little-endian and C-contiguous (a copy only
    when the value is not) and read-only, so an in-place change cannot bypass synchronisation.

    Parameters
    ----------
    dtype : str
        One of :data:`DTYPES`.
    shape : str
        Shape declaration (see :func:`parse_shape`), e.g. ``"[N, 2]"``.
    **kwargs
        Passed to :class:`traitlets.TraitType` (``help``, ``read_only``, ``allow_none``...).
    """

    default_value = None
    info_text = "a numpy array"

    def __init__(self, dtype: str, shape: str, **kwargs: Any):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.shape = shape
        self.shapes = parse_shape(shape)
        kwargs.setdefault("allow_none", True)
        super().__init__(None, **kwargs)

    def info(self) -> str:
        return f"a {self.dtype.name} array of shape {self.shape}"

    def validate(self, obj: Any, value: Any) -> np.ndarray | None:
        if value is None:
            if self.allow_none:
                return None
            self.error(obj, value)
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        name = self.name or "array"
        if arr.dtype.newbyteorder("=") != self.dtype.newbyteorder("="):
            raise traitlets.TraitError(
                f"{name} must be a {self.dtype.name} array of shape {self.shape}, got dtype {arr.dtype} "
                f"(convert with .astype(np.{self.dtype.name}))"
            )
        if not any(_matches(arr.shape, dims) for dims in self.shapes):
            raise traitlets.TraitError(
                f"{name} must be a {self.dtype.name} array of shape {self.shape}, got shape {tuple(arr.shape)}"
            )
        out = np.ascontiguousarray(arr, dtype=self.dtype.newbyteorder("<"))
        out = out.view()  # flags of a view: the caller's own array stays writeable
        out.flags.writeable = False
        return out


def encode_array(value: np.ndarray | None, widget: Any = None) -> dict[str, Any] | None:
    """``to_json`` of an array trait: ``{"dtype", "shape", "buffer"}`` with the bytes as a memoryview.

    The buffer shares the array's memory (no copy); ipywidgets sends it as a binary message part.

    Examples
    --------
    >>> import numpy as np
    >>> msg = encode_array(np.arange(3, dtype=np.int32))
    >>> msg["dtype"], msg["shape"], bytes(msg["buffer"])[:4]
    ('int32', [3], b'\\x00\\x00\\x00\\x00')
    """
    if value is None:
        return None
    arr = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
    data = arr.reshape(-1).view(np.uint8).data  # a flat byte memoryview, no copy (also for empty arrays)
    return {"dtype": arr.dtype.name, "shape": [int(s) for s in arr.shape], "buffer": data}


def decode_array(value: dict[str, Any] | None, widget: Any = None) -> np.ndarray | None:
    """``from_json`` of an array trait: the inverse of :func:`encode_array`.

    Raises
    ------
    ValueError
        If the dtype is not one of :data:`DTYPES` or the buffer size does not match the shape.
    """
    if value is None:
        return None
    dtype = value["dtype"]
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    shape = tuple(int(s) for s in value["shape"])
    buffer = value["buffer"]
    flat = np.frombuffer(buffer, dtype=np.dtype(dtype).newbyteorder("<"))
    if flat.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"a buffer of {flat.size} {dtype} values cannot have shape {list(shape)}")
    return flat.reshape(shape)


def array_trait(dtype: str, shape: str, help: str, *, read_only: bool = True) -> Array:
    """Declare a synced array trait: its dtype and shape travel with its buffer.

    Parameters
    ----------
    dtype : str
        One of :data:`DTYPES`, e.g. ``"float32"``.
    shape : str
        Declared shape, e.g. ``"[N, 2]"`` (see :func:`parse_shape`); checked on every assignment.
    help : str
        The trait's docstring: what it holds, dtype, shape, units.
    read_only : bool
        Results computed by the view are read-only from Python (the view sets them with
        ``set_trait``; a user assignment raises :class:`traitlets.TraitError`).

    Returns
    -------
    Array
        The trait, tagged ``sync=True`` with :func:`encode_array` / :func:`decode_array`.
    """
    if not help.strip():
        raise ValueError("an array trait needs a help text (what it holds, dtype, shape, units)")
    trait = Array(dtype, shape, help=help, read_only=read_only)
    return trait.tag(sync=True, to_json=encode_array, from_json=decode_array)
