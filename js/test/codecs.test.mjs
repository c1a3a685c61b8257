import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeArray, ndcToPixel, pixelToNdc, pixelToPlane, planeToPixel, splitXY } from '../codecs.js';

// What ipywidgets hands a view for an array trait: {dtype, shape, buffer} with a DataView buffer.
const wire = (typed, dtype, shape) => ({ dtype, shape, buffer: new DataView(typed.buffer, typed.byteOffset, typed.byteLength) });

test('decodeArray views a DataView without copying when aligned, dtype and shape travel along', () => {
  const src = new Float32Array([1.5, -2, 3.25, 0, 8, -1]);
  const out = decodeArray(wire(src, 'float32', [3, 2]));
  assert.equal(out.dtype, 'float32');
  assert.deepEqual(out.shape, [3, 2]);
  assert.ok(out.data instanceof Float32Array);
  assert.deepEqual(Array.from(out.data), Array.from(src));
  assert.equal(out.data.buffer, src.buffer);
});

test('decodeArray decodes every dtype of the Python codec', () => {
  const cases = [
    ['float32', Float32Array, [0.5, -1, 3]],
    ['float64', Float64Array, [1e-300, -2.5, 7]],
    ['int8', Int8Array, [-128, 0, 127]],
    ['int16', Int16Array, [-32768, 1, 32767]],
    ['int32', Int32Array, [-1, 5, 2 ** 31 - 1]],
    ['uint8', Uint8Array, [0, 128, 255]],
    ['uint16', Uint16Array, [0, 1, 65535]],
    ['uint32', Uint32Array, [0, 1, 2 ** 32 - 1]],
  ];
  for (const [dtype, Type, values] of cases) {
    const out = decodeArray(wire(new Type(values), dtype, [1, 3]), dtype);
    assert.ok(out.data instanceof Type, dtype);
    assert.deepEqual(Array.from(out.data), values, dtype);
    assert.deepEqual(out.shape, [1, 3]);
  }
});

test('decodeArray copies an unaligned buffer correctly and accepts an ArrayBuffer', () => {
  const values = new Float32Array([7, 8, 9]);
  const shifted = new Uint8Array(14);
  shifted.set(new Uint8Array(values.buffer), 1);
  const view = new DataView(shifted.buffer, 1, 12);
  assert.deepEqual(Array.from(decodeArray({ dtype: 'float32', shape: [3], buffer: view }).data), [7, 8, 9]);
  const ab = new Int32Array([-1, 5]).buffer;
  assert.deepEqual(Array.from(decodeArray({ dtype: 'int32', shape: [2], buffer: ab }).data), [-1, 5]);
});

test('decodeArray: null is an empty array of the expected dtype; empty shapes need no buffer', () => {
  const none = decodeArray(null, 'int32');
  assert.ok(none.data instanceof Int32Array && none.data.length === 0);
  assert.deepEqual(none.shape, [0]);
  const empty = decodeArray({ dtype: 'float32', shape: [0, 2], buffer: new DataView(new ArrayBuffer(0)) });
  assert.equal(empty.data.length, 0);
  assert.deepEqual(empty.shape, [0, 2]);
  assert.equal(decodeArray({ dtype: 'uint8', shape: [0] }).data.length, 0);
});

test('decodeArray rejects a wrong dtype, a size that does not match the shape, and raw buffers', () => {
  const f = wire(new Float32Array(6), 'float32', [3, 2]);
  assert.throws(() => decodeArray(f, 'int32'), /expected a int32 array, got float32/);
  assert.throws(() => decodeArray({ ...f, shape: [4, 2] }), /cannot have shape \[4, 2\]/);
  assert.throws(() => decodeArray({ dtype: 'float32', shape: [1], buffer: new Uint8Array(5) }), /whole number/);
  assert.throws(() => decodeArray({ dtype: 'float16', shape: [1], buffer: new Uint8Array(2) }), /unknown dtype/);
  assert.throws(() => decodeArray(new DataView(new ArrayBuffer(8))), /\{dtype, shape, buffer\}/);
  assert.throws(() => decodeArray({ dtype: 'float32', shape: [2], buffer: [1, 2] }), /binary buffer/);
});

test('splitXY de-interleaves positions', () => {
  const { x, y } = splitXY(new Float32Array([0, 1, 2, 3, 4, 5]));
  assert.deepEqual(Array.from(x), [0, 2, 4]);
  assert.deepEqual(Array.from(y), [1, 3, 5]);
});

test('NDC <-> pixel: [-1,1]^2 fills the canvas, y up', () => {
  assert.deepEqual(ndcToPixel(-1, 1, 400, 300), [0, 0]);
  assert.deepEqual(ndcToPixel(1, -1, 400, 300), [400, 300]);
  assert.deepEqual(ndcToPixel(0, 0, 400, 300), [200, 150]);
  const [x, y] = pixelToNdc(...ndcToPixel(0.3, -0.7, 500, 500), 500, 500);
  assert.ok(Math.abs(x - 0.3) < 1e-12 && Math.abs(y + 0.7) < 1e-12);
});

test('plane <-> pixel uses pixel centres plus half a cell of padding', () => {
  const extent = [0, 1, 0, 1];
  const g = 3; // centres at 0, 0.5, 1 -> drawn span [-0.25, 1.25]
  assert.deepEqual(planeToPixel(-0.25, 1.25, 300, 300, extent, g), [0, 0]);
  const [cx, cy] = planeToPixel(0, 0, 300, 300, extent, g);
  assert.ok(Math.abs(cx - 50) < 1e-9 && Math.abs(cy - 250) < 1e-9); // centre of the lower-left cell
  const [a, b] = pixelToPlane(cx, cy, 300, 300, extent, g);
  assert.ok(Math.abs(a) < 1e-12 && Math.abs(b) < 1e-12);
});
