"""The typed array codec: what a view sends is what the browser decodes, dtype and shape included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import traitlets
from ipywidgets.widgets.widget import _put_buffers, _remove_buffers

from geowidgets.widgets._codec import DTYPES, Array, array_trait, decode_array, encode_array, parse_shape

SHAPES = {
    "[N]": [(0,), (1,), (7,)],
    "[N, 2]": [(0, 2), (5, 2)],
    "[G, G]": [(1, 1), (4, 4)],
    "[N, H, W, 3]": [(2, 3, 4, 3)],
}


def _sample(dtype: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    info = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    if np.dtype(dtype).kind == "f":
        values = rng.normal(scale=1e3, size=shape)
        flat = values.reshape(-1)
        if flat.size >= 2:
            flat[:2] = [info.min, info.max]  # the extremes survive the trip
        return values.astype(dtype)
    values = rng.integers(int(info.min), int(info.max), size=shape, endpoint=True, dtype=np.int64)
    flat = values.reshape(-1)
    if flat.size >= 2:
        flat[:2] = [info.min, info.max]
    return values.astype(dtype)


def _wire(message: dict) -> dict:
    """What the browser receives: JSON state plus separate binary buffers (as ipywidgets sends them)."""
    state, paths, buffers = _remove_buffers({"x": message})
    received = json.loads(json.dumps(state))
    _put_buffers(received, paths, [bytes(b) for b in buffers])
    return received["x"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("declared", list(SHAPES))
def test_round_trip_of_every_dtype_and_shape(dtype, declared):
    rng = np.random.default_rng(0)

    class Holder(traitlets.HasTraits):
        a = array_trait(dtype, declared, "test array")

    holder = Holder()
    for shape in SHAPES[declared]:
        value = _sample(dtype, shape, rng)
        holder.set_trait("a", value)
        message = encode_array(holder.a)
        assert message["dtype"] == dtype and message["shape"] == list(shape)
        assert message["buffer"].nbytes == value.nbytes
        # the buffer is the little-endian C-order bytes of the array, as the browser reads them
        assert bytes(message["buffer"]) == value.astype(np.dtype(dtype).newbyteorder("<")).tobytes(order="C")
        back = decode_array(_wire(message))
        assert back.dtype == np.dtype(dtype) and back.shape == shape
        np.testing.assert_array_equal(back, value)


def test_big_endian_and_non_contiguous_values_are_stored_little_endian_contiguous():
    class Holder(traitlets.HasTraits):
        a = array_trait("float32", "[N, 2]", "test array")

    src = np.arange(12, dtype=">f4").reshape(2, 6)[:, ::2].T  # [3, 2], big-endian, strided
    holder = Holder()
    holder.set_trait("a", src)
    assert holder.a.dtype.str == "<f4" and holder.a.flags.c_contiguous
    np.testing.assert_array_equal(holder.a, src.astype(np.float64))
    assert bytes(encode_array(holder.a)["buffer"]) == np.ascontiguousarray(src, dtype="<f4").tobytes()


def test_stored_array_is_read_only_but_the_callers_array_is_not_frozen():
    class Holder(traitlets.HasTraits):
        a = array_trait("int32", "[N]", "test array")

    mine = np.arange(4, dtype=np.int32)
    holder = Holder()
    holder.set_trait("a", mine)
    with pytest.raises(ValueError, match="read-only"):
        holder.a[0] = 9
    mine[0] = 9  # still the caller's to change
    assert mine.flags.writeable


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")

    class Holder(traitlets.HasTraits):
        a = array_trait("float32", "[N, 2]", "test array")

    holder = Holder()
    t = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    holder.set_trait("a", t)
    np.testing.assert_array_equal(holder.a, t.numpy())


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.zeros((3, 2), np.float64), r"a must be a float32 array of shape \[N, 2\], got dtype float64"),
        (np.zeros((3, 2), np.int32), "got dtype int32"),
        (np.zeros(6, np.float32), r"got shape \(6,\)"),
        (np.zeros((3, 3), np.float32), r"got shape \(3, 3\)"),
        (np.zeros((1, 3, 2), np.float32), r"got shape \(1, 3, 2\)"),
        ([[0.0, 1.0]], "got dtype float64"),
    ],
)
def test_wrong_dtype_or_shape_is_rejected_with_a_clear_error(value, match):
    class Holder(traitlets.HasTraits):
        a = array_trait("float32", "[N, 2]", "test array", read_only=False)

    with pytest.raises(traitlets.TraitError, match=match):
        Holder().a = value


def test_symbols_repeated_in_a_shape_must_agree_and_alternatives_are_allowed():
    class Holder(traitlets.HasTraits):
        grid = array_trait("uint8", "[G, G]", "square", read_only=False)
        images = array_trait("uint8", "[N, H, W] or [N, H, W, 3]", "images", read_only=False)

    holder = Holder()
    holder.grid = np.zeros((3, 3), np.uint8)
    with pytest.raises(traitlets.TraitError, match=r"got shape \(3, 4\)"):
        holder.grid = np.zeros((3, 4), np.uint8)
    holder.images = np.zeros((2, 5, 5), np.uint8)
    holder.images = np.zeros((2, 5, 5, 3), np.uint8)
    with pytest.raises(traitlets.TraitError, match=r"got shape \(2, 5, 5, 4\)"):
        holder.images = np.zeros((2, 5, 5, 4), np.uint8)


def test_read_only_from_python_and_set_by_the_view_with_set_trait():
    class Holder(traitlets.HasTraits):
        a = array_trait("float32", "[N]", "result")

    holder = Holder()
    assert holder.a is None
    with pytest.raises(traitlets.TraitError, match="read-only"):
        holder.a = np.zeros(3, np.float32)
    holder.set_trait("a", np.ones(3, np.float32))
    np.testing.assert_array_equal(holder.a, np.ones(3))
    holder.set_trait("a", None)
    assert holder.a is None and encode_array(holder.a) is None


def test_trait_metadata_and_declaration_errors():
    trait = array_trait("int32", "[N]", "Sample index of each row.")
    assert isinstance(trait, Array) and trait.help == "Sample index of each row."
    assert trait.metadata["sync"] is True
    assert trait.metadata["to_json"] is encode_array and trait.metadata["from_json"] is decode_array
    with pytest.raises(ValueError, match="dtype must be one of"):
        array_trait("float16", "[N]", "x")
    with pytest.raises(ValueError, match="help text"):
        array_trait("float32", "[N]", "  ")
    with pytest.raises(ValueError, match="shape must look like"):
        parse_shape("N, 2")
    with pytest.raises(ValueError, match="integer or a name"):
        parse_shape("[N, 2.5]")


def test_decode_rejects_a_buffer_that_does_not_fit_the_shape():
    message = encode_array(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"cannot have shape \[3, 2\]"):
        decode_array({**message, "shape": [3, 2]})
    with pytest.raises(ValueError, match="dtype must be one of"):
        decode_array({**message, "dtype": "complex64"})


def test_views_send_dtype_and_shape_with_the_buffer():
    """A real view's state, as ipywidgets sends it: the buffer travels apart, dtype and shape in the JSON."""
    from geowidgets.widgets import EmbeddingView

    view = EmbeddingView()
    xy = np.random.default_rng(1).normal(size=(50, 2))
    view.set_points(xy, labels=np.arange(50) % 3)
    state, paths, buffers = _remove_buffers(view.get_state(["positions", "labels", "values"]))
    assert ["positions", "buffer"] in paths and ["labels", "buffer"] in paths
    assert state["positions"] == {"dtype": "float32", "shape": [50, 2]}
    assert state["labels"] == {"dtype": "int32", "shape": [50]}
    assert state["values"] is None
    sent = dict(zip(map(tuple, paths), buffers))
    np.testing.assert_array_equal(np.frombuffer(sent["positions", "buffer"], "<f4").reshape(50, 2), view.positions)
    np.testing.assert_array_equal(np.frombuffer(sent["labels", "buffer"], "<i4"), np.arange(50) % 3)
    with pytest.raises(traitlets.TraitError, match="read-only"):
        view.positions = np.zeros((50, 2), np.float32)
