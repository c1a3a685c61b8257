// Binary arrays from the kernel. Every array trait (geowidgets/widgets/_codec.py) arrives as
// {dtype, shape, buffer}: ipywidgets hands the buffer to the browser as a DataView (or an
// ArrayBuffer / typed array in saved widget state). decodeArray turns that value into a typed
// array without copying when the memory is aligned, and never goes through JSON lists.

const TYPES = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
};

function typeOf(dtype) {
  const Type = TYPES[dtype];
  if (!Type) throw new Error(`unknown dtype ${dtype}; allowed: ${Object.keys(TYPES).join(', ')}`);
  return Type;
}

/** A typed array of `Type` viewing `buffer` (DataView, ArrayBuffer or typed array); copies only when unaligned. */
function viewBuffer(buffer, Type, dtype) {
  let ab;
  let offset = 0;
  let length;
  if (buffer instanceof ArrayBuffer) {
    ab = buffer;
    length = buffer.byteLength;
  } else if (ArrayBuffer.isView(buffer)) {
    ab = buffer.buffer;
    offset = buffer.byteOffset;
    length = buffer.byteLength;
  } else {
    throw new Error(`expected a binary buffer, got ${typeof buffer}`);
  }
  const size = Type.BYTES_PER_ELEMENT;
  if (length % size !== 0) {
    throw new Error(`buffer of ${length} bytes is not a whole number of ${dtype} values`);
  }
  if (offset % size === 0) return new Type(ab, offset, length / size);
  return new Type(ab.slice(offset, offset + length));
}

/**
 * Decode an array trait's value {dtype, shape, buffer} into {dtype, shape, data}, `data` a typed
 * array (row-major, no copy when aligned). A null value (no data yet) decodes to an empty array
 * of `dtype`. With `dtype` given, a value of another dtype is an error.
 */
export function decodeArray(value, dtype = null) {
  if (value == null) {
    const Type = typeOf(dtype ?? 'float32');
    return { dtype: dtype ?? 'float32', shape: [0], data: new Type(0) };
  }
  if (typeof value !== 'object' || !('dtype' in value) || !Array.isArray(value.shape)) {
    throw new Error('expected an array value {dtype, shape, buffer}');
  }
  if (dtype !== null && value.dtype !== dtype) throw new Error(`expected a ${dtype} array, got ${value.dtype}`);
  const Type = typeOf(value.dtype);
  const shape = value.shape.map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const data = value.buffer == null && count === 0 ? new Type(0) : viewBuffer(value.buffer, Type, value.dtype);
  if (data.length !== count) {
    throw new Error(`a buffer of ${data.length} ${value.dtype} values cannot have shape [${shape.join(', ')}]`);
  }
  return { dtype: value.dtype, shape, data };
}

/** Split interleaved [x0, y0, x1, y1, ...] into column arrays {x, y}. */
export function splitXY(xy) {
  const n = Math.floor(xy.length / 2);
  const x = new Float32Array(n);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = xy[2 * i];
    y[i] = xy[2 * i + 1];
  }
  return { x, y };
}

/** Map a canvas pixel to data coordinates for a camera showing exactly [-1, 1]^2. */
export function pixelToNdc(px, py, width, height) {
  return [(2 * px) / width - 1, 1 - (2 * py) / height];
}

/** Map data coordinates in [-1, 1]^2 to a canvas pixel (inverse of pixelToNdc). */
export function ndcToPixel(x, y, width, height) {
  return [((x + 1) / 2) * width, ((1 - y) / 2) * height];
}

/**
 * Plane coordinates of the drawn image's edges for a slice whose `extent` = [a0, a1, b0, b1] holds
 * the first/last pixel *centres* of a G x G grid: the image is padded by half a cell.
 */
function imageBounds(extent, resolution) {
  const [a0, a1, b0, b1] = extent;
  const g = Math.max(resolution - 1, 1);
  const da = (a1 - a0) / g;
  const db = (b1 - b0) / g;
  return { aLo: a0 - da / 2, aHi: a1 + da / 2, bLo: b0 - db / 2, bHi: b1 + db / 2 };
}

/** Pixel -> plane coordinates of a decision slice (see imageBounds for the extent convention). */
export function pixelToPlane(px, py, width, height, extent, resolution) {
  const { aLo, aHi, bLo, bHi } = imageBounds(extent, resolution);
  return [aLo + (px / width) * (aHi - aLo), bHi - (py / height) * (bHi - bLo)];
}

/** Plane coordinates -> pixel (inverse of pixelToPlane). */
export function planeToPixel(a, b, width, height, extent, resolution) {
  const { aLo, aHi, bLo, bHi } = imageBounds(extent, resolution);
  return [((a - aLo) / (aHi - aLo)) * width, ((bHi - b) / (bHi - bLo)) * height];
}
